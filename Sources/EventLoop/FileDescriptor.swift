// An owning descriptor: closed exactly once, by `close()` or when the owner is dropped.
import Glibc

/// Owns one open descriptor. Not copyable, so it cannot be closed twice; `deinit` closes it if the
/// owner neither closed nor released it. The hot path uses ``rawValue`` directly.
public struct FileDescriptor: ~Copyable {
    /// The descriptor number; valid while this value is alive.
    public let rawValue: Int32

    /// Takes ownership of `rawValue` (which must be open and owned by no one else).
    public init(_ rawValue: Int32) {
        precondition(rawValue >= 0, "FileDescriptor: negative descriptor")
        self.rawValue = rawValue
    }

    /// Closes the descriptor. Deregister it from its loop first.
    public consuming func close() {
        IO.close(rawValue)
        discard self
    }

    /// Gives up ownership without closing, returning the number (the caller now owns it).
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    deinit {
        IO.close(rawValue)
    }
}
