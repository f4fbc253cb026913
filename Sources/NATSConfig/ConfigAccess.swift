import Formats

/// Typed reads of configuration values. Each failure names the key, what was expected and what
/// was found, at the value's `file:line:column`.
extension ConfigNode {
    /// The value as a string. Throws ``ConfigError`` if it is not a string.
    public func string(for key: String) throws(ConfigError) -> String {
        guard case .string(let s) = value else { throw mismatch(key, expected: "a string") }
        return s
    }

    /// The value as an integer (size suffixes already applied).
    /// Throws ``ConfigError`` if it is not an integer, or is outside `range`.
    public func integer(for key: String, in range: ClosedRange<Int64> = Int64.min...Int64.max) throws(ConfigError) -> Int64 {
        guard case .integer(let n) = value else {
            if case .string(let s) = value, s.first?.isNumber == true {
                throw ConfigError(
                    "invalid value for \"\(key)\": expected an integer, found the string \"\(s)\" (sizes are written unquoted, e.g. 1MB)",
                    at: location)
            }
            throw mismatch(key, expected: "an integer")
        }
        guard range.contains(n) else {
            throw ConfigError("invalid value for \"\(key)\": \(n) is outside \(range.lowerBound)...\(range.upperBound)", at: location)
        }
        return n
    }

    /// The value as a boolean. Throws ``ConfigError`` if it is not a boolean.
    public func bool(for key: String) throws(ConfigError) -> Bool {
        guard case .bool(let b) = value else { throw mismatch(key, expected: "a boolean (true/false/yes/no/on/off)") }
        return b
    }

    /// The value as a number of seconds, from an integer or a float (as `auth_timeout` is written).
    /// Throws ``ConfigError`` if it is neither, or is negative.
    public func seconds(for key: String) throws(ConfigError) -> Double {
        let s: Double
        switch value {
        case .integer(let n): s = Double(n)
        case .float(let f): s = f
        default: throw mismatch(key, expected: "a number of seconds")
        }
        guard s >= 0 else { throw ConfigError("invalid value for \"\(key)\": must not be negative", at: location) }
        return s
    }

    /// The value as a duration: a string in Go's syntax (`"2m"`, `"500ms"`, `"1h30m"`). A bare
    /// integer is taken as seconds, as nats-server does (which only warns about it).
    /// Throws ``ConfigError`` for any other value or an unreadable duration.
    public func duration(for key: String) throws(ConfigError) -> Duration {
        switch value {
        case .integer(let n): return .seconds(n)
        case .string(let s):
            guard let d = parseGoDuration(s) else {
                throw ConfigError(
                    "invalid duration \"\(s)\" for \"\(key)\": use a number with a unit, e.g. \"500ms\", \"10s\", \"2m\", \"1h30m\"",
                    at: location)
            }
            return d
        default: throw mismatch(key, expected: "a duration string such as \"2m\"")
        }
    }

    /// The value as a map. Throws ``ConfigError`` if it is not a map.
    public func map(for key: String) throws(ConfigError) -> ConfigMap {
        guard case .map(let m) = value else { throw mismatch(key, expected: "a map { ... }") }
        return m
    }

    /// The value as an array. Throws ``ConfigError`` if it is not an array.
    public func array(for key: String) throws(ConfigError) -> [ConfigNode] {
        guard case .array(let a) = value else { throw mismatch(key, expected: "an array [ ... ]") }
        return a
    }

    /// A string or an array of strings, as permission lists are written.
    /// Throws ``ConfigError`` for anything else.
    public func stringList(for key: String) throws(ConfigError) -> [String] {
        switch value {
        case .string(let s): return [s]
        case .array(let items):
            var out: [String] = []
            for item in items { out.append(try item.string(for: key)) }
            return out
        default: throw mismatch(key, expected: "a string or an array of strings")
        }
    }

    /// The error for a value of the wrong kind: names the key, what was expected and what was found.
    public func mismatch(_ key: String, expected: String) -> ConfigError {
        ConfigError("invalid value for \"\(key)\": expected \(expected), found \(value.kindName)", at: location)
    }
}

/// Parses a duration in Go's `time.ParseDuration` syntax: an optional sign, then one or more
/// `<number><unit>` parts, units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; `"0"` alone is zero.
/// Returns nil for anything else.
public func parseGoDuration(_ text: String) -> Duration? {
    GoDuration.parse(text).map { .nanoseconds($0) }
}
