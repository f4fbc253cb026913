import Foundation
import Synchronization
import Testing
@testable import ServiceKit

/// A clock the test moves by hand.
final class ManualUnixTime: Sendable {
    private let value: Mutex<Int64>
    init(_ start: Int64) { value = Mutex(start) }
    var now: Int64 { value.withLock { $0 } }
    func advance(_ seconds: Int64) { value.withLock { $0 += seconds } }
}

@Suite struct JWTTests {
    let secret = Array("a-test-secret-of-32-bytes-length".utf8)
    let time = ManualUnixTime(1_700_000_000)

    func authority(issuer: String? = "auth", audience: String? = "api", leeway: Int64 = 0,
                   secret: [UInt8]? = nil) throws -> JWTAuthority {
        let time = self.time
        return try JWTAuthority(secret: secret ?? self.secret, issuer: issuer, audience: audience, leeway: leeway,
                                now: { time.now })
    }

    /// Builds a token from raw header and payload JSON, signed with `key`.
    func forge(header: String, payload: String, key: [UInt8]? = nil) -> String {
        let input = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
        return input + "." + Base64URL.encode(HMACSHA256.authenticate(Array(input.utf8), key: key ?? secret))
    }

    @Test func issuedTokenVerifiesWithAllClaims() throws {
        let jwt = try authority()
        let token = try jwt.issue(subject: "user-1", lifetime: 900, custom: ["email": .string("a@b.c"), "admin": .bool(true)])
        let claims = try jwt.verify(token)
        #expect(claims.subject == "user-1")
        #expect(claims.issuer == "auth")
        #expect(claims.audience == ["api"])
        #expect(claims.issuedAt == time.now)
        #expect(claims.expiresAt == time.now + 900)
        #expect(claims.custom == ["email": .string("a@b.c"), "admin": .bool(true)])
        #expect(claims.id != nil)
    }

    @Test func headerIsHS256AndTokenHasThreeParts() throws {
        let token = try authority().issue(subject: "s", lifetime: 60)
        let parts = token.split(separator: ".")
        #expect(parts.count == 3)
        let headerBytes = try #require(Base64URL.decode(parts[0]))
        let header = try #require(JSONValue.parse(headerBytes))
        #expect(header == .object(["alg": .string("HS256"), "typ": .string("JWT")]))
    }

    @Test func audienceMayBeAnArrayContainingTheExpectedValue() throws {
        let jwt = try authority()
        let token = try jwt.sign(JWTClaims(issuer: "auth", audience: ["web", "api"], expiresAt: time.now + 10))
        #expect(try jwt.verify(token).audience == ["web", "api"])
        let single = forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","aud":"api","exp":\#(time.now + 10)}"#)
        #expect(try jwt.verify(single).audience == ["api"])
    }

    @Test func expiredTokenIsRefusedAtExactlyExp() throws {
        let jwt = try authority()
        let token = try jwt.issue(subject: "s", lifetime: 60)
        time.advance(59)
        _ = try jwt.verify(token)
        time.advance(1)
        let exp = time.now
        #expect(throws: JWTError.expired(expiresAt: exp, now: exp)) { try jwt.verify(token) }
    }

    @Test func leewayToleratesSmallSkew() throws {
        let jwt = try authority(leeway: 30)
        let token = try jwt.issue(subject: "s", lifetime: 60)
        time.advance(80)
        _ = try jwt.verify(token)
        time.advance(10)
        #expect(throws: JWTError.self) { try jwt.verify(token) }
    }

    @Test func notYetValidTokenIsRefusedUntilNbf() throws {
        let jwt = try authority()
        let nbf = time.now + 100
        let token = try jwt.sign(JWTClaims(issuer: "auth", audience: ["api"], expiresAt: nbf + 100, notBefore: nbf))
        #expect(throws: JWTError.notYetValid(notBefore: nbf, now: time.now)) { try jwt.verify(token) }
        time.advance(100)
        #expect(try jwt.verify(token).notBefore == nbf)
    }

    @Test func algNoneIsRefusedInAnySpellingEvenWithoutSignature() throws {
        let jwt = try authority()
        let payload = Base64URL.encode(Array(#"{"iss":"auth","aud":"api","exp":\#(time.now + 100)}"#.utf8))
        for alg in ["none", "None", "NONE"] {
            let header = Base64URL.encode(Array(#"{"alg":"\#(alg)","typ":"JWT"}"#.utf8))
            #expect(throws: JWTError.unsecuredToken) { try jwt.verify(header + "." + payload + ".") }
        }
    }

    @Test func everyOtherAlgorithmIsRefused() throws {
        let jwt = try authority()
        let payload = #"{"iss":"auth","aud":"api","exp":\#(time.now + 100)}"#
        for alg in ["HS384", "HS512", "RS256", "ES256", "hs256"] {
            #expect(throws: JWTError.unsupportedAlgorithm(alg)) {
                try jwt.verify(forge(header: #"{"alg":"\#(alg)"}"#, payload: payload))
            }
        }
        #expect(throws: JWTError.unsupportedAlgorithm("<missing>")) {
            try jwt.verify(forge(header: #"{"typ":"JWT"}"#, payload: payload))
        }
    }

    @Test func signatureFromAnotherKeyOrTamperedPayloadIsRefused() throws {
        let jwt = try authority()
        let other = try authority(secret: Array("another-secret-of-enough-length!".utf8))
        #expect(throws: JWTError.badSignature) { try jwt.verify(try other.issue(subject: "s", lifetime: 60)) }

        let token = try jwt.issue(subject: "user-1", lifetime: 60)
        let parts = token.split(separator: ".").map(String.init)
        let evil = Base64URL.encode(Array(#"{"iss":"auth","aud":"api","sub":"admin","exp":\#(time.now + 60)}"#.utf8))
        #expect(throws: JWTError.badSignature) { try jwt.verify(parts[0] + "." + evil + "." + parts[2]) }
        // Every single-bit change of the signature is caught.
        var sig = try #require(Base64URL.decode(parts[2]))
        for bit in [0, 7, 100, 255] {
            sig[bit / 8] ^= UInt8(1 << (bit % 8))
            #expect(throws: JWTError.badSignature) { try jwt.verify(parts[0] + "." + parts[1] + "." + Base64URL.encode(sig)) }
            sig[bit / 8] ^= UInt8(1 << (bit % 8))
        }
        #expect(throws: JWTError.badSignature) { try jwt.verify(parts[0] + "." + parts[1] + ".") }
    }

    @Test func wrongIssuerAndAudienceAreRefused() throws {
        let jwt = try authority()
        let exp = time.now + 60
        #expect(throws: JWTError.wrongIssuer(expected: "auth", actual: "evil")) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"evil","aud":"api","exp":\#(exp)}"#))
        }
        #expect(throws: JWTError.wrongIssuer(expected: "auth", actual: nil)) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: #"{"aud":"api","exp":\#(exp)}"#))
        }
        #expect(throws: JWTError.wrongAudience(expected: "api", actual: ["web", "mobile"])) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","aud":["web","mobile"],"exp":\#(exp)}"#))
        }
        #expect(throws: JWTError.wrongAudience(expected: "api", actual: [])) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","exp":\#(exp)}"#))
        }
    }

    @Test func missingExpirationAndMistypedClaimsAreRefused() throws {
        let jwt = try authority()
        #expect(throws: JWTError.missingClaim("exp")) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","aud":"api"}"#))
        }
        #expect(throws: JWTError.invalidClaim("exp")) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","aud":"api","exp":"soon"}"#))
        }
        #expect(throws: JWTError.invalidClaim("aud")) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","aud":[1],"exp":\#(time.now + 9)}"#))
        }
        #expect(throws: JWTError.invalidClaim("sub")) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","aud":"api","sub":5,"exp":\#(time.now + 9)}"#))
        }
    }

    @Test func hugeExpDoesNotOverflowAndFractionalDatesAreAccepted() throws {
        let jwt = try authority(leeway: 10)
        let far = forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","aud":"api","exp":9223372036854775807}"#)
        #expect(try jwt.verify(far).expiresAt == .max)
        let fractional = forge(header: #"{"alg":"HS256"}"#, payload: #"{"iss":"auth","aud":"api","exp":\#(time.now + 5).75}"#)
        #expect(try jwt.verify(fractional).expiresAt == time.now + 5)
    }

    @Test(arguments: [
        "", "abc", "a.b", "a.b.c.d", "!!!.e30.AAAA", "eyJhbGciOiJIUzI1NiJ9.e30.!!!",   // bad header / bad signature encoding
        "bm90IGpzb24.e30.AAAA",             // header "not json"
        "W10.e30.AAAA",                     // header [] is not an object
    ])
    func malformedTokensAreRefusedAsMalformed(token: String) throws {
        let jwt = try authority()
        #expect {
            try jwt.verify(token)
        } throws: { error in
            guard case .malformed = error as? JWTError else { return false }
            return true
        }
    }

    @Test func payloadThatIsNotAnObjectIsMalformedEvenWhenSigned() throws {
        let jwt = try authority()
        #expect(throws: JWTError.malformed("payload is not a JSON object")) {
            try jwt.verify(forge(header: #"{"alg":"HS256"}"#, payload: "[1,2]"))
        }
    }

    @Test func oversizedTokenIsRefusedBeforeAnyDecoding() throws {
        let jwt = try authority()
        let huge = String(repeating: "A", count: JWTAuthority.maximumTokenLength + 1)
        #expect(throws: JWTError.malformed("longer than \(JWTAuthority.maximumTokenLength) bytes")) { try jwt.verify(huge) }
    }

    @Test func shortSecretsAndReservedCustomClaimsAreRejected() throws {
        #expect(throws: JWTError.secretTooShort(5)) { try JWTAuthority(secret: Array("short".utf8)) }
        let jwt = try authority()
        #expect(throws: JWTError.reservedClaimName("exp")) {
            try jwt.issue(subject: "s", lifetime: 10, custom: ["exp": .int(1)])
        }
    }

    @Test func withoutIssuerOrAudienceSettingsThoseClaimsAreNotRequired() throws {
        let jwt = try authority(issuer: nil, audience: nil)
        let token = forge(header: #"{"alg":"HS256"}"#, payload: #"{"sub":"x","exp":\#(time.now + 9)}"#)
        #expect(try jwt.verify(token).subject == "x")
    }
}
