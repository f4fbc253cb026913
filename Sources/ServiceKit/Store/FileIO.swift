#if canImport(Glibc)
import Glibc
#endif
import POSIXFiles

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

extension StoreError: SystemCallError {}

/// The store's POSIX file calls: they retry EINTR and throw ``StoreError/io(operation:path:errno:)``.
typealias FileIO = POSIXFile<StoreError>

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
