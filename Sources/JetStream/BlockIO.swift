import POSIXFiles

extension StreamStoreError: SystemCallError {}

/// The file backend's POSIX calls: they retry EINTR and throw
/// ``StreamStoreError/io(operation:path:errno:)`` naming the file.
typealias BlockIO = POSIXFile<StreamStoreError>
