#if canImport(Glibc)
import Glibc
#endif

/// Why a store operation failed.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed: the operation, the path and errno.
    case io(operation: String, path: String, errno: Int32)
    /// The file does not start with a valid store header (not a store, or damaged).
    case badHeader(path: String)
    /// A damaged record is followed by intact ones, so this is not a torn tail from a crash: the
    /// store refuses to open rather than drop acknowledged records. Offsets are in bytes.
    case corruption(path: String, offset: Int64, nextValidRecord: Int64)
    /// A record passed its checksum but its contents do not decode (a format bug, not a crash).
    case invalidRecord(path: String, sequence: UInt64)
    /// The payload is larger than the store's `maxRecordSize`.
    case recordTooLarge(size: Int, limit: Int)
    /// An earlier write or fsync failed; the file's state is unknown, so the store refuses further
    /// writes until it is reopened (which runs recovery).
    case failed(path: String)
    /// The store was closed.
    case closed

    public var description: String {
        switch self {
        case .io(let op, let path, let e): return "store: \(op) \(path): \(String(cString: strerror(e))) (errno \(e))"
        case .badHeader(let path): return "store: \(path) has no valid store header"
        case .corruption(let path, let offset, let next):
            return "store: \(path) is damaged at byte \(offset) but has intact records from byte \(next); refusing to drop them"
        case .invalidRecord(let path, let seq): return "store: \(path) record \(seq) has a valid checksum but cannot be decoded"
        case .recordTooLarge(let size, let limit): return "store: record of \(size) bytes exceeds the limit of \(limit)"
        case .failed(let path): return "store: \(path) had a failed write or fsync; reopen it to recover"
        case .closed: return "store: closed"
        }
    }
}

/// Thin POSIX file helpers that retry EINTR and throw ``StoreError/io(operation:path:errno:)``.
enum FileIO {
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(StoreError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw .io(operation: "open", path: path, errno: errno) }
        }
    }

    /// Writes all of `bytes` at `offset`, at most `chunk` bytes per pwrite(2).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int64, path: String, chunk: Int = .max) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes {
                pwrite(fd, $0.baseAddress! + done, min($0.count - done, max(1, chunk)), off_t(offset) + off_t(done))
            }
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw .io(operation: "write", path: path, errno: n < 0 ? errno : EIO)
        }
    }

    /// Reads `count` bytes at `offset`; fewer only at end of file.
    static func read(_ fd: Int32, count: Int, at offset: Int64, path: String) throws(StoreError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n > 0 { done += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw .io(operation: "read", path: path, errno: errno)
        }
        if done < count { buffer.removeLast(count - done) }
        return buffer
    }

    static func sync(_ fd: Int32, path: String) throws(StoreError) {
        while fsync(fd) != 0 {
            if errno != EINTR { throw .io(operation: "fsync", path: path, errno: errno) }
        }
    }

    static func truncate(_ fd: Int32, to size: Int64, path: String) throws(StoreError) {
        while ftruncate(fd, off_t(size)) != 0 {
            if errno != EINTR { throw .io(operation: "truncate", path: path, errno: errno) }
        }
    }

    static func size(_ fd: Int32, path: String) throws(StoreError) -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(operation: "stat", path: path, errno: errno) }
        return Int64(st.st_size)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func rename(_ from: String, _ to: String) throws(StoreError) {
        guard Glibc.rename(from, to) == 0 else { throw .io(operation: "rename", path: from, errno: errno) }
    }

    static func remove(_ path: String) throws(StoreError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .io(operation: "unlink", path: path, errno: errno) }
    }

    /// fsync on the directory, so a created, renamed or removed entry survives a crash.
    static func syncDirectory(_ path: String) throws(StoreError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try sync(fd, path: path)
    }

    /// Creates `path` and its missing parents (like `mkdir -p`).
    static func makeDirectories(_ path: String) throws(StoreError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw .io(operation: "mkdir", path: current, errno: errno)
            }
        }
    }
}

/// Little-endian integer helpers for the on-disk format.
extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    func littleEndian<T: FixedWidthInteger>(at offset: Int, as: T.Type) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
