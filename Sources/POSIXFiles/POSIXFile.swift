#if canImport(Glibc)
import Glibc
#endif

/// An error the file helpers can throw: which system call failed, on which path, with which errno.
/// An enum with `case io(operation: String, path: String, errno: Int32)` conforms as it is.
public protocol SystemCallError: Error {
    static func io(operation: String, path: String, errno: Int32) -> Self
}

/// Thin POSIX file calls for stores that write their own files: each retries EINTR and throws
/// `Failure.io(operation:path:errno:)` naming the file, so each store keeps its own error type.
/// Inlinable, so a store's hot write path calls them specialised for its error type.
public enum POSIXFile<Failure: SystemCallError> {
    /// Opens `path` (`O_CLOEXEC` is added).
    /// - Throws: `Failure.io` with operation "open".
    @inlinable
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(Failure) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw Failure.io(operation: "open", path: path, errno: errno) }
        }
    }

    /// Writes all of `bytes` at `offset`, at most `chunk` bytes per pwrite(2).
    /// - Throws: `Failure.io` with operation "write" (EIO when pwrite wrote nothing).
    @inlinable
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String,
                                chunk: Int = .max) throws(Failure) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, min(bytes.count - done, max(1, chunk)), off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw Failure.io(operation: "write", path: path, errno: n < 0 ? errno : EIO)
        }
    }

    /// Writes all of `bytes` at `offset`, at most `chunk` bytes per pwrite(2).
    /// - Throws: `Failure.io` with operation "write".
    @inlinable
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int64, path: String,
                                chunk: Int = .max) throws(Failure) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(Failure) in try writeAll(fd, raw, at: offset, path: path, chunk: chunk) }
        }
        try result.get()
    }

    /// Reads `count` bytes at `offset` into a new array; fewer only at end of file.
    /// - Throws: `Failure.io` with operation "read".
    @inlinable
    public static func read(_ fd: Int32, count: Int, at offset: Int64, path: String) throws(Failure) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n > 0 { done += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw Failure.io(operation: "read", path: path, errno: errno)
        }
        if done < count { buffer.removeLast(count - done) }
        return buffer
    }

    /// The size of the open file.
    /// - Throws: `Failure.io` with operation "fstat".
    @inlinable
    public static func size(_ fd: Int32, path: String) throws(Failure) -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Failure.io(operation: "fstat", path: path, errno: errno) }
        return Int64(st.st_size)
    }

    /// fsync(2), or fdatasync(2) with `dataOnly`.
    /// - Throws: `Failure.io` with operation "fsync".
    @inlinable
    public static func sync(_ fd: Int32, path: String, dataOnly: Bool = false) throws(Failure) {
        while (dataOnly ? fdatasync(fd) : fsync(fd)) != 0 {
            if errno != EINTR { throw Failure.io(operation: "fsync", path: path, errno: errno) }
        }
    }

    /// Cuts or extends the open file to `length` bytes.
    /// - Throws: `Failure.io` with operation "truncate".
    @inlinable
    public static func truncate(_ fd: Int32, to length: Int64, path: String) throws(Failure) {
        while ftruncate(fd, off_t(length)) != 0 {
            if errno != EINTR { throw Failure.io(operation: "truncate", path: path, errno: errno) }
        }
    }

    /// Whether anything exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// rename(2).
    /// - Throws: `Failure.io` with operation "rename", naming `from`.
    public static func rename(_ from: String, _ to: String) throws(Failure) {
        guard Glibc.rename(from, to) == 0 else { throw Failure.io(operation: "rename", path: from, errno: errno) }
    }

    /// Removes the file at `path`; a missing file is not an error.
    /// - Throws: `Failure.io` with operation "unlink".
    public static func remove(_ path: String) throws(Failure) {
        guard unlink(path) == 0 || errno == ENOENT else { throw Failure.io(operation: "unlink", path: path, errno: errno) }
    }

    /// fsync on the directory, so a created, renamed or removed entry survives a crash.
    /// - Throws: `Failure.io` with operation "open" or "fsync".
    public static func syncDirectory(_ path: String) throws(Failure) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try sync(fd, path: path)
    }

    /// Creates `path` and its missing parents (0o755), like `mkdir -p`.
    /// - Throws: `Failure.io` with operation "mkdir"; ENOTDIR naming the first existing path that is
    ///   not a directory.
    public static func makeDirectories(_ path: String) throws(Failure) {
        var st = stat()
        if stat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { return }
            throw Failure.io(operation: "mkdir", path: path, errno: ENOTDIR)
        }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw Failure.io(operation: "mkdir", path: path, errno: errno) }
    }

    /// The names in `directory`, without "." and "..".
    /// - Throws: `Failure.io` with operation "opendir".
    public static func list(_ directory: String) throws(Failure) -> [String] {
        guard let dir = opendir(directory) else { throw Failure.io(operation: "opendir", path: directory, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
