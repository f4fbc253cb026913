// libFuzzer target for ServiceKit's JWT verification (JWTAuthority.verify: base64url, the header and
// claims JSON, the claim checks): built by scripts/fuzz.sh (target jwt) into the ServiceKit module
// from JWT.swift, JSONValue.swift and Crypto/ only, over the Formats module. The first input byte
// picks the mode, the rest is:
// - 0: a token as a client would send it. It must be refused: nobody but the secret's holder can
//   sign, so a token that verifies means a forged signature was accepted. Each dot-separated part
//   that decodes as base64url must be the one encoding of its bytes.
// - 1 and 2: a header JSON, a NUL byte and a payload JSON (without a NUL: the usual HS256 header and
//   the whole text as the payload), encoded and signed here with the authority's secret, so the
//   header and claim checks are reached. With 2 the authority also requires an issuer and an
//   audience. Claims that verify must meet the checks (exp in the future, issuer and audience as
//   required), and signing them again must give a token that verifies to the same claims (unless
//   it has grown past the longest token verify accepts).

import Formats

/// Stops the run with `message` when `condition` is false (unlike `precondition`, an -O build
/// still prints the message, so the report says which property failed).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

private let secret = Array("fuzzing-secret-of-32-bytes-long!".utf8)
private let now: Int64 = 1_700_000_000
private let leeway: Int64 = 30
private let plain = try! JWTAuthority(secret: secret, leeway: leeway, now: { now })
private let strict = try! JWTAuthority(secret: secret, issuer: "auth-service", audience: "platform", leeway: leeway, now: { now })
private let mac = HMACSHA256(key: secret)

/// `value` as it comes back from its own JSON: infinities (which JSON cannot express) as null.
private func normalized(_ value: JSONValue) -> JSONValue {
    switch value {
    case .double(let d) where !d.isFinite: return .null
    case .array(let items): return .array(items.map(normalized))
    case .object(let members): return .object(members.mapValues(normalized))
    default: return value
    }
}

private func verifyRaw(_ token: String) {
    for part in token.split(separator: ".", omittingEmptySubsequences: false) {
        if let bytes = Base64URL.decode(part) {
            require(Base64URL.encode(bytes) == part, "base64url '\(part)' is not the one encoding of its bytes")
        }
    }
    if let claims = try? plain.verify(token) {
        fatalError("a token not signed here verified: \(token) -> \(claims)")
    }
}

private func verifySigned(header: [UInt8], payload: [UInt8], authority: JWTAuthority) {
    let signingInput = Base64URL.encode(header) + "." + Base64URL.encode(payload)
    let token = signingInput + "." + Base64URL.encode(mac.authenticate(Array(signingInput.utf8)))
    let claims: JWTClaims
    do {
        claims = try authority.verify(token)
    } catch {
        return
    }
    guard let exp = claims.expiresAt else { fatalError("verified without exp: \(token)") }
    require(now < saturatingAdd(exp, leeway), "verified although expired: \(token)")
    if let nbf = claims.notBefore { require(now >= saturatingAdd(nbf, -leeway), "verified before nbf: \(token)") }
    if let issuer = authority.issuer { require(claims.issuer == issuer, "verified with issuer \(claims.issuer ?? "none")") }
    if let audience = authority.audience {
        require(claims.audience?.contains(audience) == true, "verified without the audience: \(token)")
    }
    for name in claims.custom.keys { require(!JWTClaims.registered.contains(name), "registered claim \(name) in custom") }
    let again: String
    do {
        again = try authority.sign(claims)
    } catch {
        fatalError("verified claims cannot be signed again: \(error)")
    }
    // Re-encoding can grow a token (invalid UTF-8 in a claim comes back as U+FFFD, three bytes
    // for one) past the length verify looks at; such a token is refused for its length alone.
    guard again.utf8.count <= JWTAuthority.maximumTokenLength else { return }
    do {
        let reread = try authority.verify(again)
        var expected = claims
        expected.custom = claims.custom.mapValues(normalized)
        require(reread == expected, "claims do not survive signing again: \(claims) vs \(reread)")
    } catch {
        fatalError("a token signed from verified claims does not verify: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJWT(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 3 {
    case 0:
        verifyRaw(String(decoding: body, as: UTF8.self))
    default:
        let header: [UInt8]
        let payload: [UInt8]
        if let nul = body.firstIndex(of: 0) {
            header = Array(body[..<nul])
            payload = Array(body[(nul + 1)...])
        } else {
            header = Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)
            payload = body
        }
        verifySigned(header: header, payload: payload, authority: data[0] % 3 == 1 ? plain : strict)
    }
    return 0
}
