#if canImport(Glibc)
import Glibc
#endif
import Formats
import POSIXFiles

/// The on-disk catalogue of streams: `<storeDirectory>/$G/streams/<name>/` holds `meta.json` (the
/// validated configuration and the creation time) and, for file storage, the message blocks under
/// `msgs/`. Memory streams keep their `meta.json` too, so they come back (empty) after a restart,
/// as 2.9.10's do.
enum StreamCatalog {
    static let metaFile = "meta.json"

    /// `<storeDirectory>/$G/streams`.
    static func streamsDirectory(_ storeDirectory: String, account: String = "$G") -> String {
        storeDirectory + "/" + account + "/streams"
    }

    /// `{"created":<ns>,"config":{...}}`: the config as the API writes it, which ``StreamConfig/decode(_:)``
    /// reads back unchanged.
    static func encode(config: StreamConfig, created: Int64) -> [UInt8] {
        var out: [UInt8] = Array(#"{"created":"#.utf8)
        JSONWriter.appendDecimal(created, to: &out)
        out.append(contentsOf: #","config":"#.utf8)
        config.write(to: &out)
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    /// Reads a `meta.json` written by ``encode(config:created:)``.
    /// - Throws: a text saying what is wrong with it.
    static func decode(_ bytes: [UInt8]) throws(CatalogError) -> (config: StreamConfig, created: Int64) {
        let document: JSON
        do { document = try JSON.parse(bytes) } catch { throw CatalogError(text: "not JSON (\(error))") }
        guard case .int(let created)? = document["created"] else { throw CatalogError(text: "no \"created\" time") }
        guard let body = document["config"], body.members != nil else { throw CatalogError(text: "no \"config\" object") }
        let config: StreamConfig
        do { config = try StreamConfig.decode(body).validated() } catch {
            throw CatalogError(text: "invalid config: \(error.text)")
        }
        return (config, created)
    }

    struct CatalogError: Error { var text: String }

    /// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
    /// - Throws: ``StreamStoreError/io(operation:path:errno:)``.
    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws(StreamStoreError) {
        let temporary = path + ".tmp"
        let fd = try BlockIO.open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try BlockIO.writeAll(fd, bytes, at: 0, path: temporary)
            try BlockIO.sync(fd, path: temporary)
        } catch {
            close(fd)
            try? BlockIO.remove(temporary)
            throw error
        }
        close(fd)
        try BlockIO.rename(temporary, path)
        try BlockIO.syncDirectory(directory)
    }

    /// Reads a whole small file.
    /// - Throws: ``StreamStoreError/io(operation:path:errno:)``.
    static func readFile(_ path: String) throws(StreamStoreError) -> [UInt8] {
        let fd = try BlockIO.open(path, O_RDONLY)
        defer { close(fd) }
        let size = try BlockIO.size(fd, path: path)
        return try BlockIO.read(fd, count: Int(size), at: 0, path: path)
    }

    /// Whether `path` is a directory.
    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Removes `path` and everything under it (symbolic links are removed, not followed).
    /// - Throws: ``StreamStoreError/io(operation:path:errno:)`` for the first entry that cannot go.
    static func removeTree(_ path: String) throws(StreamStoreError) {
        guard isDirectory(path) else {
            try BlockIO.remove(path)
            return
        }
        for name in try BlockIO.list(path) { try removeTree(path + "/" + name) }
        guard rmdir(path) == 0 || errno == ENOENT else { throw .io(operation: "rmdir", path: path, errno: errno) }
    }
}
