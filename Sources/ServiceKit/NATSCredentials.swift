import Foundation

/// The user a service connects to NATS as, and the reply prefix that goes with it.
///
/// The platform gives each service its own NATS user whose permissions allow only what the
/// service does (nats-server/permissions.conf). Replies to the service's requests come back on
/// `_INBOX.<user>.>`: the broker lets only that user subscribe there, so no other identity can
/// read them.
public struct NATSCredentials: Sendable, Equatable {
    /// The NATS user (`NATS_USER`).
    public var user: String
    /// Its password (`NATS_PASSWORD`, or the first line of `NATS_PASSWORD_FILE`).
    public var password: String

    /// The inbox prefix of this user's requests: `_INBOX.<user>`.
    public var inboxPrefix: String { "_INBOX.\(user)" }

    /// Largest password file read (a password is one short line; anything bigger is a mistake).
    static let maximumFileSize = 4096

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    /// The credentials `configuration` names, or nil when it names none (`NATS_USER` unset:
    /// the service connects with what `NATS_URL` carries, or anonymously).
    ///
    /// `NATS_PASSWORD_FILE` is read here, once: its first line is the password (a trailing
    /// newline, as `echo` writes, is not part of it). The file's permissions are not checked:
    /// Docker and Kubernetes mount secrets readable by everyone in the container (0444, 0644),
    /// where the service is the only user; scripts/platform writes its files with mode 600.
    /// - Throws: ``ConfigurationError`` when a password is given without `NATS_USER`, `NATS_USER`
    ///   without a password, both `NATS_PASSWORD` and `NATS_PASSWORD_FILE`, or a password file
    ///   that is missing, unreadable, empty or larger than 4096 bytes.
    public static func from(_ configuration: Configuration) throws(ConfigurationError) -> NATSCredentials? {
        let user = configuration[StandardSettings.natsUser]
        let password = configuration[StandardSettings.natsPassword]
        let file = configuration[StandardSettings.natsPasswordFile]
        func problem<Value>(_ setting: Setting<Value>, _ message: String) -> ConfigurationError {
            let source = configuration.source(of: setting.key) ?? .builtInDefault
            let key: String
            if case .environment = source { key = setting.environment } else { key = setting.key }
            return ConfigurationError(problems: [.init(key: key, source: source, message: message)])
        }
        guard let user else {
            if password != nil { throw problem(StandardSettings.natsPassword, "a password needs NATS_USER") }
            if file != nil { throw problem(StandardSettings.natsPasswordFile, "a password file needs NATS_USER") }
            return nil
        }
        if password != nil && file != nil {
            throw problem(StandardSettings.natsPasswordFile, "set NATS_PASSWORD or NATS_PASSWORD_FILE, not both")
        }
        if let password { return NATSCredentials(user: user, password: password) }
        guard let file else {
            throw problem(StandardSettings.natsUser, "NATS_USER \"\(user)\" needs NATS_PASSWORD or NATS_PASSWORD_FILE")
        }
        return NATSCredentials(user: user, password: try readPasswordFile(file, problem: { problem(StandardSettings.natsPasswordFile, $0) }))
    }

    private static func readPasswordFile(_ path: String, problem: (String) -> ConfigurationError) throws(ConfigurationError) -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw problem("\(path) does not exist")
        }
        guard !isDirectory.boolValue else { throw problem("\(path) is a folder, not a file") }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw problem("\(path) cannot be read (permissions?)") }
        defer { try? handle.close() }
        let bytes: Data
        do {
            bytes = try handle.read(upToCount: maximumFileSize + 1) ?? Data()
        } catch {
            throw problem("\(path) cannot be read: \(error)")
        }
        guard bytes.count <= maximumFileSize else { throw problem("\(path) is larger than \(maximumFileSize) bytes; it should hold one password") }
        // Bytes, not Characters: "\r\n" is one Character, which a split on "\n" would not find.
        var line = bytes.prefix { $0 != 0x0A }
        if line.last == 0x0D { line = line.dropLast() }
        let password = String(decoding: line, as: UTF8.self)
        guard !password.isEmpty else { throw problem("\(path) is empty; its first line must be the password") }
        return password
    }
}

extension StandardSettings {
    /// `NATS_USER`: the service's own NATS user (a subject token: it names the reply inbox).
    public static let natsUser = Setting<String?>(
        key: "nats_user", environment: "NATS_USER", default: nil,
        meaning: "NATS user of this service (replies come back on _INBOX.<user>.>); unset: the credentials in NATS_URL, if any",
        expected: "a name of letters, digits, '-' or '_'", render: { $0 ?? "(none)" }) { input in
            guard let text = input.text, !text.isEmpty, text.utf8.allSatisfy(isNameByte) else { return nil }
            return text
        }
    /// `NATS_PASSWORD`: the password of `NATS_USER`.
    public static let natsPassword = Setting<String?>.secret(
        "nats_password", env: "NATS_PASSWORD", meaning: "password of NATS_USER (or use NATS_PASSWORD_FILE)", minimumLength: 1)
    /// `NATS_PASSWORD_FILE`: a file whose first line is the password of `NATS_USER` (Docker secrets).
    public static let natsPasswordFile = Setting<String?>(
        key: "nats_password_file", environment: "NATS_PASSWORD_FILE", default: nil,
        meaning: "file whose first line is the password of NATS_USER (a Docker or Kubernetes secret), read at start",
        expected: "a file path", render: { $0 ?? "(none)" }) { input in
            guard let text = input.text, !text.isEmpty else { return nil }
            return text
        }

    static func isNameByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x5f
    }
}
