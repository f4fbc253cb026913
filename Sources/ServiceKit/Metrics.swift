import Synchronization

/// Counters, gauges and histograms, rendered in the Prometheus text exposition format (0.0.4).
///
/// Families are declared once (name, help, type); samples are addressed by family name plus
/// label pairs. Thread-safe; every update takes one short lock.
public final class MetricsRegistry: Sendable {
    /// The default latency buckets in seconds.
    public static let defaultBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// The Prometheus metric type of a family.
    public enum Kind: String, Sendable { case counter, gauge, histogram }

    private struct Histogram {
        var buckets: [UInt64]
        var sum: Double = 0
        var count: UInt64 = 0
    }

    private struct Family {
        var kind: Kind
        var help: String
        var bounds: [Double]
        var values: [String: Double] = [:]
        var histograms: [String: Histogram] = [:]
    }

    private let families = Mutex<[String: Family]>([:])

    /// An empty registry.
    public init() {}

    /// Declares a counter family (idempotent).
    public func declareCounter(_ name: String, help: String) { declare(name, .counter, help, []) }
    /// Declares a gauge family (idempotent).
    public func declareGauge(_ name: String, help: String) { declare(name, .gauge, help, []) }
    /// Declares a histogram family with upper bounds `buckets` (sorted; `+Inf` is implicit).
    public func declareHistogram(_ name: String, help: String, buckets: [Double] = MetricsRegistry.defaultBuckets) {
        declare(name, .histogram, help, buckets.sorted())
    }

    private func declare(_ name: String, _ kind: Kind, _ help: String, _ bounds: [Double]) {
        families.withLock { f in
            if f[name] == nil { f[name] = Family(kind: kind, help: help, bounds: bounds) }
        }
    }

    /// A sample's address resolved once (family name plus rendered labels), for hot paths that
    /// update the same sample per message.
    public struct Sample: Sendable {
        let name: String
        let key: String
    }

    /// The address of `name` with `labels`, to pass to ``increment(_:by:)``.
    public func sample(_ name: String, labels: [(String, String)] = []) -> Sample {
        Sample(name: name, key: MetricsRegistry.labelKey(labels))
    }

    /// Adds `amount` to a counter or gauge sample resolved with ``sample(_:labels:)``.
    public func increment(_ sample: Sample, by amount: Double = 1) {
        add(sample.name, sample.key, amount)
    }

    /// Adds `amount` to a counter or gauge sample. Undeclared names are declared as counters.
    public func increment(_ name: String, labels: [(String, String)] = [], by amount: Double = 1) {
        add(name, MetricsRegistry.labelKey(labels), amount)
    }

    private func add(_ name: String, _ key: String, _ amount: Double) {
        families.withLock { f in
            if f[name] == nil { f[name] = Family(kind: .counter, help: name, bounds: []) }
            f[name]!.values[key, default: 0] += amount  // just ensured present
        }
    }

    /// Sets a gauge (or a counter mirrored from elsewhere) to `value`.
    public func set(_ name: String, labels: [(String, String)] = [], to value: Double) {
        let key = MetricsRegistry.labelKey(labels)
        families.withLock { f in
            if f[name] == nil { f[name] = Family(kind: .gauge, help: name, bounds: []) }
            f[name]!.values[key] = value  // just ensured present
        }
    }

    /// Records one observation in a histogram. Undeclared names get the default buckets.
    public func observe(_ name: String, labels: [(String, String)] = [], _ value: Double) {
        let key = MetricsRegistry.labelKey(labels)
        families.withLock { f in
            if f[name] == nil { f[name] = Family(kind: .histogram, help: name, bounds: MetricsRegistry.defaultBuckets) }
            let bounds = f[name]!.bounds  // just ensured present
            var h = f[name]!.histograms[key] ?? Histogram(buckets: [UInt64](repeating: 0, count: bounds.count))
            if let i = bounds.firstIndex(where: { value <= $0 }) { h.buckets[i] += 1 }
            h.sum += value
            h.count += 1
            f[name]!.histograms[key] = h
        }
    }

    /// The current value of a counter or gauge sample (nil if never set).
    public func value(_ name: String, labels: [(String, String)] = []) -> Double? {
        let key = MetricsRegistry.labelKey(labels)
        return families.withLock { $0[name]?.values[key] }
    }

    /// The number of observations of a histogram sample.
    public func observationCount(_ name: String, labels: [(String, String)] = []) -> UInt64 {
        let key = MetricsRegistry.labelKey(labels)
        return families.withLock { $0[name]?.histograms[key]?.count ?? 0 }
    }

    /// Everything in the Prometheus text format, families sorted by name, samples by labels.
    public func render() -> String {
        let snapshot = families.withLock { $0 }
        var out = ""
        for name in snapshot.keys.sorted() {
            guard let family = snapshot[name] else { continue }
            out += "# HELP \(name) \(MetricsRegistry.escapeHelp(family.help))\n# TYPE \(name) \(family.kind.rawValue)\n"
            switch family.kind {
            case .counter, .gauge:
                for key in family.values.keys.sorted() {
                    out += "\(name)\(key.isEmpty ? "" : "{\(key)}") \(MetricsRegistry.format(family.values[key] ?? 0))\n"
                }
            case .histogram:
                for key in family.histograms.keys.sorted() {
                    guard let h = family.histograms[key] else { continue }
                    let prefix = key.isEmpty ? "" : key + ","
                    var cumulative: UInt64 = 0
                    for (i, bound) in family.bounds.enumerated() {
                        cumulative += h.buckets[i]
                        out += "\(name)_bucket{\(prefix)le=\"\(MetricsRegistry.format(bound))\"} \(cumulative)\n"
                    }
                    out += "\(name)_bucket{\(prefix)le=\"+Inf\"} \(h.count)\n"
                    out += "\(name)_sum\(key.isEmpty ? "" : "{\(key)}") \(MetricsRegistry.format(h.sum))\n"
                    out += "\(name)_count\(key.isEmpty ? "" : "{\(key)}") \(h.count)\n"
                }
            }
        }
        return out
    }

    /// `a="1",b="2"` in the given order, values escaped.
    static func labelKey(_ labels: [(String, String)]) -> String {
        labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",")
    }

    static func escapeLabel(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
