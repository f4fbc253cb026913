/// Where a configuration token came from: the file (as named when it was opened or included),
/// a 1-based line and a 1-based column.
public struct SourceLocation: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `file:line:column`, the form editors and compilers use.
    public var description: String { "\(file):\(line):\(column)" }
}

/// A configuration error, always with the place it refers to when there is one.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var location: SourceLocation?
    public var message: String

    public init(_ message: String, at location: SourceLocation?) {
        self.message = message
        self.location = location
    }

    public var description: String {
        if let location { return "\(location): \(message)" }
        return message
    }
}

/// A parsed configuration value. Integers already carry their size suffix (`1KB` is 1024).
public indirect enum ConfigValue: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)
    /// An ISO 8601 Zulu date-time literal (`2016-05-04T18:53:41Z`), kept as written.
    case datetime(String)
    case array([ConfigNode])
    case map(ConfigMap)

    /// The name of the value's kind, for error messages.
    public var kindName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .bool: "boolean"
        case .datetime: "date-time"
        case .array: "array"
        case .map: "map"
        }
    }
}

/// A value and where it was written.
public struct ConfigNode: Sendable, Equatable {
    public var value: ConfigValue
    public var location: SourceLocation

    public init(_ value: ConfigValue, at location: SourceLocation) {
        self.value = value
        self.location = location
    }
}

/// One `key = value` of a map.
public struct ConfigEntry: Sendable, Equatable {
    public var key: String
    public var keyLocation: SourceLocation
    public var node: ConfigNode
    /// True when this entry was referenced as `$key` somewhere below it. nats-server treats
    /// such an entry as a variable definition rather than a setting; an entry that is never
    /// referenced is an ordinary setting (so an unused variable is an unknown field).
    public var isUsedVariable: Bool

    public init(key: String, keyLocation: SourceLocation, node: ConfigNode, isUsedVariable: Bool = false) {
        self.key = key
        self.keyLocation = keyLocation
        self.node = node
        self.isUsedVariable = isUsedVariable
    }
}

/// An ordered map of entries. A key set twice keeps its last value, in the position of its
/// first definition (as nats-server's map assignment does).
public struct ConfigMap: Sendable, Equatable {
    public private(set) var entries: [ConfigEntry] = []

    public init(entries: [ConfigEntry] = []) {
        for entry in entries { set(entry) }
    }

    /// Adds or replaces the entry with the same key (case-sensitive, as in the file).
    public mutating func set(_ entry: ConfigEntry) {
        if let index = entries.firstIndex(where: { $0.key == entry.key }) {
            entries[index] = entry
        } else {
            entries.append(entry)
        }
    }

    /// The entry for `key`, compared case-insensitively (nats-server lower-cases option keys).
    public func entry(_ key: String) -> ConfigEntry? {
        let wanted = key.lowercased()
        return entries.last { $0.key.lowercased() == wanted }
    }

    /// The value node for `key`, compared case-insensitively.
    public subscript(key: String) -> ConfigNode? { entry(key)?.node }

    /// The entries that are settings, that is, all but the variable definitions that were used.
    public var settings: [ConfigEntry] { entries.filter { !$0.isUsedVariable } }

    mutating func markUsed(at index: Int) { entries[index].isUsedVariable = true }
}
