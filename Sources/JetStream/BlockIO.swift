#if canImport(Glibc)
import Glibc
#endif

/// POSIX calls of the file backend: they retry EINTR and throw ``StreamStoreError/io(operation:path:errno:)``
/// naming the file.
enum BlockIO {
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(StreamStoreError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw .io(operation: "open", path: path, errno: errno) }
        }
    }

    /// Writes all of `bytes` at `offset`.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws(StreamStoreError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n < 0 && errno == EINTR { continue }
            throw .io(operation: "write", path: path, errno: n < 0 ? errno : EIO)
        }
    }

    /// Reads `count` bytes at `offset` into a new array; fewer only at end of file.
    static func read(_ fd: Int32, count: Int, at offset: Int64, path: String) throws(StreamStoreError) -> [UInt8] {
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

    static func size(_ fd: Int32, path: String) throws(StreamStoreError) -> Int64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(operation: "fstat", path: path, errno: errno) }
        return Int64(st.st_size)
    }

    static func sync(_ fd: Int32, path: String, dataOnly: Bool = false) throws(StreamStoreError) {
        while (dataOnly ? fdatasync(fd) : fsync(fd)) != 0 {
            if errno != EINTR { throw .io(operation: "fsync", path: path, errno: errno) }
        }
    }

    static func truncate(_ fd: Int32, to length: Int64, path: String) throws(StreamStoreError) {
        while ftruncate(fd, off_t(length)) != 0 {
            if errno != EINTR { throw .io(operation: "truncate", path: path, errno: errno) }
        }
    }

    static func unlink(_ path: String) throws(StreamStoreError) {
        if Glibc.unlink(path) != 0 && errno != ENOENT { throw .io(operation: "unlink", path: path, errno: errno) }
    }

    /// Creates `path` and its missing parents (0o755). An existing non-directory is an error naming it.
    static func makeDirectory(_ path: String) throws(StreamStoreError) {
        var st = stat()
        if stat(path, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFDIR { return }
            throw .io(operation: "mkdir", path: path, errno: ENOTDIR)
        }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectory(String(path[..<slash]))
        }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw .io(operation: "mkdir", path: path, errno: errno) }
    }

    /// The names in `directory` (without "." and "..").
    static func list(_ directory: String) throws(StreamStoreError) -> [String] {
        guard let dir = opendir(directory) else { throw .io(operation: "opendir", path: directory, errno: errno) }
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

    static func syncDirectory(_ directory: String) throws(StreamStoreError) {
        let fd = try open(directory, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try sync(fd, path: directory)
    }
}
