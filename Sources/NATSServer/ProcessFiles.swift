// The pid file (-P) and the ports file (--ports_file_dir), as nats-server writes them.

import Glibc

/// Writes and removes the process's pid file and ports file.
public struct ProcessFiles: Sendable {
    /// Why a file could not be written.
    public struct WriteError: Error, CustomStringConvertible, Sendable {
        /// The file.
        public let path: String
        /// The errno of the failing call.
        public let code: Int32
        /// A one-line explanation.
        public var description: String { "could not write \(path): \(String(cString: strerror(code)))" }
    }

    private let pidFile: String?
    private let portsFile: String?
    private let host: String
    private let httpHost: String

    /// - Parameters:
    ///   - options: ``Options/pidFile`` and ``Options/portsFileDir`` say what to write.
    ///   - executable: `argv[0]`; its last path component names the ports file.
    public init(options: Options, executable: String) {
        pidFile = options.pidFile
        let name = executable.split(separator: "/").last.map(String.init) ?? "nats-server"
        portsFile = options.portsFileDir.map { dir in
            let base = dir.hasSuffix("/") ? String(dir.dropLast()) : dir
            return "\(base)/\(name)_\(getpid()).ports"
        }
        host = options.host
        httpHost = options.httpHost ?? options.host
    }

    /// Writes the pid file and the ports file (`{"nats":["nats://h:p",...],"monitoring":[...]}`).
    /// - Throws: ``WriteError`` when a file cannot be created or written.
    public func write(clientPort: Int, monitoringPort: Int?) throws(WriteError) {
        if let pidFile {
            try Self.writeFile(pidFile, "\(getpid())")
        }
        if let portsFile {
            var json = GoJSONObject()
            json.add("nats", strings: Self.addresses(for: host).map { "nats://\($0):\(clientPort)" })
            if let monitoringPort {
                json.add("monitoring", strings: Self.addresses(for: httpHost).map { "http://\($0):\(monitoringPort)" })
            }
            try Self.writeFile(portsFile, json.string())
        }
    }

    /// Removes the ports file (nats-server deletes it at shutdown).
    public func remove() {
        if let portsFile { unlink(portsFile) }
    }

    private static func writeFile(_ path: String, _ text: String) throws(WriteError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WriteError(path: path, code: errno) }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw WriteError(path: path, code: errno)
            }
            offset += n
        }
        bytes.removeAll()
    }

    /// The addresses clients can use for `host`: itself, or every interface address for a wildcard.
    static func addresses(for host: String) -> [String] {
        guard host == "0.0.0.0" || host == "::" || host.isEmpty else {
            return [host.contains(":") ? "[\(host)]" : host]
        }
        var result: [String] = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return ["127.0.0.1"] }
        defer { freeifaddrs(list) }
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr else { continue }
            let family = Int32(address.pointee.sa_family)
            guard family == AF_INET || (family == AF_INET6 && host == "::") else { continue }
            var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            let length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
            guard getnameinfo(address, length, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0 else { continue }
            let ip = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if ip.contains("%") { continue }  // link-local with a zone
            let entryText = family == AF_INET6 ? "[\(ip)]" : ip
            if !result.contains(entryText) { result.append(entryText) }
        }
        // Loopback first, as nats-server lists it.
        result.sort { a, b in (a == "127.0.0.1" ? 0 : 1) < (b == "127.0.0.1" ? 0 : 1) }
        return result.isEmpty ? ["127.0.0.1"] : result
    }
}
