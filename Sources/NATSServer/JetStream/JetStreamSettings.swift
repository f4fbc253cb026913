// JetStreamSettings: the engine's options from the broker's, with nats-server 2.9.10's defaults.

import Glibc
import JetStream

/// What the engine is started with, derived from ``Options``.
struct JetStreamSettings {
    var engineOptions: JetStreamOptions

    /// The store is `<store_dir>/jetstream`, or `$TMPDIR/nats/jetstream` without `store_dir`;
    /// memory defaults to 75% of the machine's, storage to 75% of the store disk's free space
    /// (2.9.10's `dynJetStreamConfig`).
    init(_ options: Options) {
        let base = options.storeDirectory.flatMap { $0.isEmpty ? nil : $0 } ?? (Self.temporaryDirectory() + "/nats")
        let directory = Self.join(base, "jetstream")
        let memory = options.jetStreamMaxMemory.flatMap { $0 >= 0 ? $0 : nil } ?? Self.defaultMaxMemory()
        let store = options.jetStreamMaxStore.flatMap { $0 >= 0 ? $0 : nil } ?? Self.defaultMaxStore(directory)
        engineOptions = JetStreamOptions(
            storeDirectory: directory, maxMemory: memory, maxStore: store, domain: options.jetStreamDomain,
            syncInterval: options.jetStreamSyncInterval.nanoseconds, syncEveryWrite: options.jetStreamSyncAlways)
    }

    private static func join(_ base: String, _ name: String) -> String {
        base.hasSuffix("/") ? base + name : base + "/" + name
    }

    /// Go's `os.TempDir()`: `$TMPDIR`, else `/tmp`.
    private static func temporaryDirectory() -> String {
        if let raw = getenv("TMPDIR") {
            let text = String(cString: raw)
            if !text.isEmpty { return text.count > 1 && text.hasSuffix("/") ? String(text.dropLast()) : text }
        }
        return "/tmp"
    }

    /// 75% of physical memory, or 256 MiB when it cannot be read.
    private static func defaultMaxMemory() -> Int64 {
        let pages = Int64(sysconf(Int32(_SC_PHYS_PAGES)))
        let size = Int64(sysconf(Int32(_SC_PAGESIZE)))
        guard pages > 0, size > 0 else { return 256 << 20 }
        return pages * size / 4 * 3
    }

    /// 75% of the free space of the disk holding `directory` (its nearest existing ancestor while
    /// it does not exist yet), or 1 TiB when it cannot be read.
    private static func defaultMaxStore(_ directory: String) -> Int64 {
        var path = directory
        while true {
            var info = statvfs()
            if statvfs(path, &info) == 0 {
                return Int64(UInt64(info.f_bavail) * UInt64(info.f_bsize) / 4 * 3)
            }
            guard let slash = path.lastIndex(of: "/"), !path.isEmpty, path != "/" else { break }
            path = slash == path.startIndex ? "/" : String(path[..<slash])
        }
        return 1 << 40
    }

    /// nats-server's `friendlyBytes`: `512 B`, `17.66 GB` (powers of 1024, two decimals).
    static func friendlyBytes(_ bytes: Int64) -> String {
        if bytes < 1024 { return "\(bytes) B" }
        let units = ["K", "M", "G", "T", "P", "E"]
        var value = Double(bytes)
        var unit = -1
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction) \(units[unit])B"
    }
}
