// What the configuration parser needs from the host: the environment, the current folder, reading a
// file, and joining an include path to the including file's folder. Glibc only, so the broker's
// dependency chain links no Foundation.

import Glibc

/// The process environment.
public enum ProcessEnvironment {
    /// Every `NAME=value` entry of the environment. An entry without `=` or that is not UTF-8 is
    /// left out; when a name appears twice, the later entry wins.
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            if let text = String(validatingCString: pointer), let equals = text.utf8.firstIndex(of: UInt8(ascii: "=")) {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }
}

/// Files and paths, as the parser uses them (and the broker, for pid files and `/proc`).
public enum HostFiles {
    /// Why a file could not be read.
    public enum ReadError: Error {
        /// The file cannot be opened: `exists` tells "permission denied" from "no such file".
        case cannotOpen(exists: Bool)
        /// A read failed (e.g. the path is a folder): the `errno` text.
        case cannotRead(String)
    }

    /// The current working folder ("" when it cannot be determined).
    static var currentDirectory: String {
        guard let pointer = getcwd(nil, 0) else { return "" }
        defer { free(pointer) }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)), as: UTF8.self)
    }

    /// Reads up to `limit` bytes of the file at `path`.
    /// - Throws: ``ReadError``.
    public static func read(_ path: String, limit: Int) throws(ReadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(exists: access(path, F_OK) == 0) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while bytes.count < limit {
            let wanted = min(chunk.count, limit - bytes.count)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, wanted) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .cannotRead(String(cString: strerror(errno)))
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    /// The folder of `path`: runs of `/` read as one and trailing slashes ignored, everything before
    /// the last segment (`/etc/nats.conf` → `/etc`, `/nats.conf` → `/`, `nats.conf` → ``).
    static func directory(of path: String) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(path.utf8.count)
        for b in path.utf8 where !(b == slash && bytes.last == slash) { bytes.append(b) }
        while bytes.count > 1, bytes.last == slash { bytes.removeLast() }
        guard let last = bytes.lastIndex(of: slash), bytes.count > 1 else { return bytes == [slash] ? "/" : "" }
        return last == 0 ? "/" : String(decoding: bytes[0..<last], as: UTF8.self)
    }

    /// `path` itself when absolute, else joined to `directory`; then standardized as Foundation's
    /// `standardizingPath` does on Linux, so that include paths in error locations stay the same
    /// for users whose configurations relied on it:
    /// - a leading `~` or `~user` becomes that home folder;
    /// - empty and `.` segments are dropped, except a relative path's first segment, which is kept;
    /// - in an absolute path `..` removes the segment before it; in a relative one it is kept;
    /// - when the path so far, after a segment other than the first, is a symbolic link with an
    ///   absolute target, the target replaces it; a relative target is left alone (resolving it from
    ///   the working folder, as Foundation does, would make the answer depend on where the broker
    ///   was started).
    static func resolve(_ path: String, relativeTo directory: String) -> String {
        let joined = path.hasPrefix("/") || directory.isEmpty ? path : directory + "/" + path
        let expanded = expandingTilde(joined)
        var segments = expanded.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard !expanded.isEmpty else { return expanded }
        let absolute = expanded.hasPrefix("/")
        var resolved: String
        if absolute {
            resolved = "/"
        } else {
            resolved = segments.removeFirst()
        }
        for segment in segments {
            switch segment {
            case ".":
                continue
            case ".." where absolute:
                resolved = Self.directory(of: resolved)
            default:
                resolved = resolved == "/" ? "/" + segment : resolved + "/" + segment
                // Links to links are followed (a bounded number of times, as the kernel does).
                var hops = 0
                while hops < 40, let target = symbolicLinkTarget(resolved), target.hasPrefix("/") {
                    resolved = target
                    hops += 1
                }
            }
        }
        return resolved
    }

    /// The target of the symbolic link at `path`, or nil when `path` is not one.
    private static func symbolicLinkTarget(_ path: String) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK else { return nil }
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buffer.withUnsafeMutableBytes { readlink(path, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count - 1) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    /// `~` and `~user` at the start of `path` replaced by the home folder (unchanged when unknown).
    private static func expandingTilde(_ path: String) -> String {
        guard path.hasPrefix("~") else { return path }
        let nameEnd = path.firstIndex(of: "/") ?? path.endIndex
        let user = path[path.index(after: path.startIndex)..<nameEnd]
        let entry = user.isEmpty ? getpwuid(getuid()) : getpwnam(String(user))
        guard let home = entry?.pointee.pw_dir.map({ String(cString: $0) }) else { return path }
        var expanded = home + path[nameEnd...]
        while expanded.count > 1, expanded.hasSuffix("/") { expanded.removeLast() }
        return expanded
    }

    private static let slash = UInt8(ascii: "/")
}
