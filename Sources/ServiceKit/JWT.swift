import Foundation

/// Why a token was refused (or could not be issued). Each failure has its own case so callers
/// and logs can tell them apart; HTTP handlers should still answer every one with the same 401.
public enum JWTError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The secret is shorter than ``JWTAuthority/minimumSecretLength`` bytes.
    case secretTooShort(Int)
    /// Not three base64url parts, bad base64url, a header or payload that is not a JSON object,
    /// or a token over ``JWTAuthority/maximumTokenLength`` bytes.
    case malformed(String)
    /// The header says `alg: none` (an unsecured JWT): always refused.
    case unsecuredToken
    /// The header names an algorithm other than HS256 (or none at all).
    case unsupportedAlgorithm(String)
    /// The HMAC-SHA256 signature does not match.
    case badSignature
    /// A registered claim has the wrong JSON type (for example `exp` as a string).
    case invalidClaim(String)
    /// A claim the verifier requires (`exp`) is absent.
    case missingClaim(String)
    /// `exp` is at or before now (minus leeway).
    case expired(expiresAt: Int64, now: Int64)
    /// `nbf` is after now (plus leeway).
    case notYetValid(notBefore: Int64, now: Int64)
    /// `iss` is not the expected issuer.
    case wrongIssuer(expected: String, actual: String?)
    /// `aud` does not contain the expected audience.
    case wrongAudience(expected: String, actual: [String])
    /// A custom claim reuses a registered claim name (iss, sub, aud, exp, nbf, iat, jti).
    case reservedClaimName(String)

    public var description: String {
        switch self {
        case .secretTooShort(let n): return "jwt: secret must be at least \(JWTAuthority.minimumSecretLength) bytes, got \(n)"
        case .malformed(let why): return "jwt: malformed token: \(why)"
        case .unsecuredToken: return "jwt: unsecured token (alg none) refused"
        case .unsupportedAlgorithm(let alg): return "jwt: algorithm '\(alg)' refused (only HS256)"
        case .badSignature: return "jwt: bad signature"
        case .invalidClaim(let name): return "jwt: claim '\(name)' has the wrong type"
        case .missingClaim(let name): return "jwt: claim '\(name)' is required"
        case .expired(let exp, let now): return "jwt: expired at \(exp) (now \(now))"
        case .notYetValid(let nbf, let now): return "jwt: not valid before \(nbf) (now \(now))"
        case .wrongIssuer(let expected, let actual): return "jwt: issuer '\(actual ?? "<none>")' is not '\(expected)'"
        case .wrongAudience(let expected, let actual): return "jwt: audience \(actual) does not include '\(expected)'"
        case .reservedClaimName(let name): return "jwt: custom claim '\(name)' is a registered claim name"
        }
    }
}

/// The claims of a JWT (RFC 7519, section 4.1) plus any custom claims. Times are NumericDates:
/// whole seconds since 1970-01-01T00:00:00Z.
public struct JWTClaims: Sendable, Equatable {
    /// `iss`.
    public var issuer: String?
    /// `sub`.
    public var subject: String?
    /// `aud`: serialised as a single string when it has exactly one element, else as an array.
    public var audience: [String]?
    /// `exp`.
    public var expiresAt: Int64?
    /// `nbf`.
    public var notBefore: Int64?
    /// `iat`.
    public var issuedAt: Int64?
    /// `jti`.
    public var id: String?
    /// Every other claim, by name.
    public var custom: [String: JSONValue]

    /// Claims with the given values (nil claims are left out of the token).
    public init(issuer: String? = nil, subject: String? = nil, audience: [String]? = nil, expiresAt: Int64? = nil,
                notBefore: Int64? = nil, issuedAt: Int64? = nil, id: String? = nil, custom: [String: JSONValue] = [:]) {
        self.issuer = issuer; self.subject = subject; self.audience = audience; self.expiresAt = expiresAt
        self.notBefore = notBefore; self.issuedAt = issuedAt; self.id = id; self.custom = custom
    }

    static let registered: Set<String> = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]

    var jsonObject: [String: JSONValue] {
        var o = custom
        if let issuer { o["iss"] = .string(issuer) }
        if let subject { o["sub"] = .string(subject) }
        if let audience { o["aud"] = audience.count == 1 ? .string(audience[0]) : .array(audience.map(JSONValue.string)) }
        if let expiresAt { o["exp"] = .int(expiresAt) }
        if let notBefore { o["nbf"] = .int(notBefore) }
        if let issuedAt { o["iat"] = .int(issuedAt) }
        if let id { o["jti"] = .string(id) }
        return o
    }

    init(jsonObject o: [String: JSONValue]) throws(JWTError) {
        func string(_ name: String) throws(JWTError) -> String? {
            guard let v = o[name] else { return nil }
            guard case .string(let s) = v else { throw .invalidClaim(name) }
            return s
        }
        func date(_ name: String) throws(JWTError) -> Int64? {
            guard let v = o[name] else { return nil }
            switch v {
            case .int(let i): return i
            case .double(let d) where d.isFinite && d > -9.2e18 && d < 9.2e18: return Int64(d.rounded(.down))
            default: throw .invalidClaim(name)
            }
        }
        issuer = try string("iss")
        subject = try string("sub")
        id = try string("jti")
        expiresAt = try date("exp")
        notBefore = try date("nbf")
        issuedAt = try date("iat")
        switch o["aud"] {
        case nil: audience = nil
        case .string(let s)?: audience = [s]
        case .array(let items)?:
            var list: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw .invalidClaim("aud") }
                list.append(s)
            }
            audience = list
        default: throw .invalidClaim("aud")
        }
        custom = o.filter { !JWTClaims.registered.contains($0.key) }
    }
}

/// Issues and verifies HS256 JSON Web Tokens (RFC 7519 / RFC 7515) with one shared secret.
///
/// Verification accepts only `alg: HS256`, compares signatures in constant time, requires `exp`,
/// and checks `nbf`, `iss` and `aud` against this authority's settings. Time comes from the
/// injected `now` closure (Unix seconds), so tests move time without sleeping.
public struct JWTAuthority: Sendable {
    /// Shortest secret accepted, in bytes.
    public static let minimumSecretLength = 16
    /// Longest token `verify` will look at (bounded work and memory for hostile input).
    public static let maximumTokenLength = 8192

    private let mac: HMACSHA256
    /// Expected `iss` (and the one `issue` stamps), if any.
    public let issuer: String?
    /// Expected member of `aud` (and the one `issue` stamps), if any.
    public let audience: String?
    /// Seconds of clock skew tolerated for `exp` and `nbf`.
    public let leeway: Int64
    private let now: @Sendable () -> Int64

    /// - Parameters:
    ///   - secret: the HMAC key (at least ``minimumSecretLength`` bytes).
    ///   - issuer: when set, `issue` stamps it and `verify` requires it.
    ///   - audience: when set, `issue` stamps it and `verify` requires `aud` to contain it.
    ///   - leeway: tolerated clock skew in seconds.
    ///   - now: the current Unix time in seconds.
    /// - Throws: ``JWTError/secretTooShort(_:)``.
    public init(secret: [UInt8], issuer: String? = nil, audience: String? = nil, leeway: Int64 = 0,
                now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) throws(JWTError) {
        guard secret.count >= JWTAuthority.minimumSecretLength else { throw .secretTooShort(secret.count) }
        mac = HMACSHA256(key: secret)
        self.issuer = issuer
        self.audience = audience
        self.leeway = max(0, leeway)
        self.now = now
    }

    /// Signs `claims` exactly as given (no claim is added).
    /// - Throws: ``JWTError/reservedClaimName(_:)`` when a custom claim uses a registered name.
    public func sign(_ claims: JWTClaims) throws(JWTError) -> String {
        for name in claims.custom.keys where JWTClaims.registered.contains(name) { throw .reservedClaimName(name) }
        let header = Base64URL.encode(JSONValue.object(["alg": .string("HS256"), "typ": .string("JWT")]).serialized)
        let payload = Base64URL.encode(JSONValue.object(claims.jsonObject).serialized)
        let signingInput = header + "." + payload
        return signingInput + "." + Base64URL.encode(mac.authenticate(Array(signingInput.utf8)))
    }

    /// Issues a token for `subject` valid for `lifetime` seconds from now, stamped with `iat`, `exp`,
    /// this authority's `iss` and `aud`, a random `jti`, and `custom` claims.
    /// - Throws: ``JWTError/reservedClaimName(_:)``; a ``CryptoError`` if the system random source fails.
    public func issue(subject: String, lifetime: Int64, custom: [String: JSONValue] = [:]) throws -> String {
        let t = now()
        let claims = JWTClaims(issuer: issuer, subject: subject, audience: audience.map { [$0] },
                               expiresAt: t + lifetime, issuedAt: t,
                               id: Base64URL.encode(try SecureRandom.bytes(16)), custom: custom)
        return try sign(claims)
    }

    /// Verifies `token` and returns its claims.
    /// - Throws: ``JWTError/malformed(_:)``, ``JWTError/unsecuredToken``,
    ///   ``JWTError/unsupportedAlgorithm(_:)``, ``JWTError/badSignature``, ``JWTError/invalidClaim(_:)``,
    ///   ``JWTError/missingClaim(_:)`` (no `exp`), ``JWTError/expired(expiresAt:now:)``,
    ///   ``JWTError/notYetValid(notBefore:now:)``, ``JWTError/wrongIssuer(expected:actual:)``,
    ///   ``JWTError/wrongAudience(expected:actual:)``.
    public func verify(_ token: String) throws(JWTError) -> JWTClaims {
        guard token.utf8.count <= JWTAuthority.maximumTokenLength else {
            throw .malformed("longer than \(JWTAuthority.maximumTokenLength) bytes")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("expected 3 dot-separated parts, found \(parts.count)") }
        guard let headerBytes = Base64URL.decode(parts[0]) else { throw .malformed("header is not base64url") }
        guard case .object(let header)? = JSONValue.parse(headerBytes) else { throw .malformed("header is not a JSON object") }
        switch header["alg"] {
        case .string("HS256")?: break
        case .string(let alg)? where alg.lowercased() == "none": throw .unsecuredToken
        case .string(let alg)?: throw .unsupportedAlgorithm(alg)
        case nil: throw .unsupportedAlgorithm("<missing>")
        case let other?: throw .unsupportedAlgorithm(String(decoding: other.serialized, as: UTF8.self))
        }
        if header["crit"] != nil { throw .malformed("critical header extensions are not supported") }
        guard let signature = Base64URL.decode(parts[2]) else { throw .malformed("signature is not base64url") }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard ConstantTime.equals(mac.authenticate(signingInput), signature) else { throw .badSignature }
        guard let payloadBytes = Base64URL.decode(parts[1]) else { throw .malformed("payload is not base64url") }
        guard case .object(let payload)? = JSONValue.parse(payloadBytes) else { throw .malformed("payload is not a JSON object") }
        let claims = try JWTClaims(jsonObject: payload)
        let t = now()
        guard let exp = claims.expiresAt else { throw .missingClaim("exp") }
        if t >= saturatingAdd(exp, leeway) { throw .expired(expiresAt: exp, now: t) }
        if let nbf = claims.notBefore, t < saturatingAdd(nbf, -leeway) {
            throw .notYetValid(notBefore: nbf, now: t)
        }
        if let issuer, claims.issuer != issuer { throw .wrongIssuer(expected: issuer, actual: claims.issuer) }
        if let audience, !(claims.audience ?? []).contains(audience) {
            throw .wrongAudience(expected: audience, actual: claims.audience ?? [])
        }
        return claims
    }
}

/// `a + b` clamped to Int64's range (claims come from untrusted input).
func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    if !overflow { return sum }
    return b > 0 ? .max : .min
}
