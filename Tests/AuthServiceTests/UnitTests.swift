import Foundation
import TestSupport
import Synchronization
import Testing
@testable import AuthService
import ServiceKit

@Suite struct ValidationTests {
    @Test func acceptsOrdinaryAddressesAndNormalizesCase() throws {
        for email in ["ann@example.com", "a.b+tag@mail.example.co.uk", "x_y-z@sub-domain.example.org"] {
            try EmailAddress.validate(EmailAddress.normalized(email))
        }
        #expect(EmailAddress.normalized("  Ann@Example.COM ") == "ann@example.com")
    }

    @Test func refusesMalformedAddressesNamingTheRule() {
        let bad = ["", "annexample.com", "a@@example.com", "a@b@example.com", "@example.com", "ann@", "ann@localhost",
                   "ann@example.c0m", ".ann@example.com", "an..n@example.com", "ann@-example.com", "ann@exa mple.com",
                   "än@example.com", String(repeating: "a", count: 65) + "@example.com",
                   "a@" + String(repeating: "b", count: 250) + ".com"]
        for email in bad {
            #expect(throws: ValidationFailure.self, "\(email)") { try EmailAddress.validate(email) }
        }
        #expect(throws: ValidationFailure(field: "email", rule: "email_length", message: "email must be at most 254 characters")) {
            try EmailAddress.validate(String(repeating: "a", count: 60) + "@" + String(repeating: "b", count: 200) + ".com")
        }
    }

    @Test func passwordRulesAreNamed() {
        func rule(_ password: String, email: String = "ann@example.com") -> String? {
            do { try PasswordPolicy.validate(password, email: email); return nil } catch { return error.rule }
        }
        #expect(rule("short1") == "min_length")
        #expect(rule(String(repeating: "a1", count: 65)) == "max_length")
        #expect(rule("onlyletterspassword") == "letters_and_digits")
        #expect(rule("1234567890123") == "letters_and_digits")
        #expect(rule("x ann@example.com 1") == "contains_email")
        #expect(rule("annabelle-123", email: "annabelle@example.com") == "contains_email")
        #expect(rule("Password123") == "common_password")
        #expect(rule("correct horse 9") == nil)
        #expect(rule("ünïcödé-pässwörd-7") == nil)
    }

    @Test func namesAreTrimmedAndBounded() throws {
        #expect(try DisplayName.validated("  Ann Lee ") == "Ann Lee")
        #expect(throws: ValidationFailure.self) { try DisplayName.validated("   ") }
        #expect(throws: ValidationFailure.self) { try DisplayName.validated(String(repeating: "n", count: 101)) }
        #expect(throws: ValidationFailure.self) { try DisplayName.validated("Ann\u{0}Lee") }
    }
}

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let t = Mutex(1000.0)
    var now: @Sendable () -> Double { { self.t.withLock { $0 } } }
    func advance(_ seconds: Double) { t.withLock { $0 += seconds } }
}

@Suite struct LoginLimiterTests {
    @Test func blocksAfterTheLimitUntilTheOldestFailureLeavesTheWindow() {
        let clock = ManualClock()
        let limiter = LoginLimiter(policy: .init(maxFailures: 3, window: 60, maxKeys: 100), now: clock.now)
        #expect(limiter.acquire("k") == nil)
        clock.advance(10)
        #expect(limiter.acquire("k") == nil)
        clock.advance(10)
        #expect(limiter.acquire("k") == nil)
        // Three failures at t=0,10,20: blocked until the first leaves the window at t=60.
        #expect(limiter.acquire("k") == 40)
        #expect(limiter.retryAfter("k") == 40)
        clock.advance(39.5)
        #expect(limiter.acquire("k") == 1)
        clock.advance(0.6)
        #expect(limiter.acquire("k") == nil)       // the window slid: one slot free
        #expect(limiter.acquire("k") != nil)
        #expect(limiter.acquire("other") == nil)   // keys are independent
    }

    @Test func forgiveAndResetTakeCountsBack() {
        let clock = ManualClock()
        let limiter = LoginLimiter(policy: .init(maxFailures: 2, window: 60, maxKeys: 100), now: clock.now)
        #expect(limiter.acquire("k") == nil)
        limiter.forgive("k")
        #expect(limiter.acquire("k") == nil)
        #expect(limiter.acquire("k") == nil)
        #expect(limiter.acquire("k") != nil)
        limiter.reset("k")
        #expect(limiter.acquire("k") == nil)
    }

    @Test func memoryStaysBoundedUnderManyKeys() {
        let clock = ManualClock()
        let limiter = LoginLimiter(policy: .init(maxFailures: 2, window: 60, maxKeys: 64), now: clock.now)
        for i in 0..<10_000 {
            clock.advance(0.001)
            _ = limiter.acquire("key-\(i)")
            #expect(limiter.trackedKeys <= 64)
        }
        // The most recent keys are still counted.
        #expect(limiter.acquire("key-9999") == nil)
        #expect(limiter.acquire("key-9999") != nil)
    }
}

@Suite struct PasswordHasherTests {
    @Test func recordsUseFreshSaltsAndVerifyOnlyTheRightPassword() async throws {
        let hasher = try PasswordHasher(iterations: 1000)
        let a = try await hasher.makeRecord("correct horse 9")
        let b = try await hasher.makeRecord("correct horse 9")
        #expect(a.salt != b.salt && a.hash != b.hash)
        #expect(a.iterations == 1000 && a.algorithm == "pbkdf2-sha256")
        let expected = try PBKDF2.deriveKey(password: Array("correct horse 9".utf8), salt: try #require(Base64URL.decode(a.salt)),
                                            iterations: 1000)
        #expect(Base64URL.decode(a.hash) == expected)
        #expect(try await hasher.verify("correct horse 9", against: a))
        #expect(try await !hasher.verify("correct horse 8", against: a))
        #expect(try await !hasher.verify("correct horse 9", against: nil))
    }

    @Test func oldRecordsKeepTheirIterationCount() async throws {
        let old = try await PasswordHasher(iterations: 1000).makeRecord("correct horse 9")
        #expect(try await PasswordHasher(iterations: 2000).verify("correct horse 9", against: old))
    }

    @Test func aFullQueueRefusesInsteadOfGrowing() async throws {
        let gate = WorkGate(concurrency: 1, queueLimit: 1)
        let release = Mutex(false)
        let started = Mutex(false)
        let first = Task { try await gate.run { started.withLock { $0 = true }; while !release.withLock({ $0 }) { usleep(1000) }; return 1 } }
        #expect(await eventually { started.withLock { $0 } })
        let second = Task { try await gate.run { 2 } }
        #expect(await eventually { gate.queued == 1 })
        // One running, one queued: a third is refused at once.
        await #expect(throws: HashingBusy.self) { _ = try await gate.run { 3 } }
        release.withLock { $0 = true }
        #expect(try await first.value == 1)
        #expect(try await second.value == 2)
    }
}

@Suite struct StorageTests {
    @Test func usersSurviveReopeningTheStore() async throws {
        let dir = try temporaryDirectory("store")
        defer { removeTemporary(dir) }
        let record = try await PasswordHasher(iterations: 1000).makeRecord("correct horse 9")
        let user = User(id: "u1", email: "ann@example.com", name: "Ann", createdAt: "2026-01-01T00:00:00Z", password: record)
        do {
            let directory = try UserDirectory(directory: dir)
            #expect(directory.reserve(email: user.email))
            #expect(!directory.reserve(email: user.email))
            try directory.insert(user)
            #expect(!directory.reserve(email: user.email))
            directory.close()
        }
        let reopened = try UserDirectory(directory: dir)
        #expect(reopened.user(id: "u1") == user)
        #expect(reopened.user(email: "ann@example.com") == user)
        #expect(!reopened.reserve(email: "ann@example.com"))
        reopened.close()
    }

    @Test func publicViewAndStoredJSONAreSeparate() throws {
        let user = User(id: "u1", email: "a@example.com", name: "A", createdAt: "t",
                        password: PasswordRecord(algorithm: "pbkdf2-sha256", iterations: 1000, salt: "c2FsdA", hash: "aGFzaA"))
        let text = String(decoding: user.publicView.json, as: UTF8.self)
        #expect(text == #"{"created_at":"t","email":"a@example.com","id":"u1","name":"A"}"#)
        #expect(!text.contains("salt") && !text.contains("hash") && !text.contains("password"))
    }

    @Test func aGeneratedSigningKeyIsKeptAndReused() throws {
        let dir = try temporaryDirectory("key")
        defer { removeTemporary(dir) }
        let first = try SigningKey.resolve(configured: nil, dataDirectory: dir)
        #expect(first.created && first.secret.count == 64)
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/jwt-secret")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let second = try SigningKey.resolve(configured: nil, dataDirectory: dir)
        #expect(!second.created && second.secret == first.secret)
        let configured = try SigningKey.resolve(configured: "from-the-environment-123", dataDirectory: dir)
        #expect(configured.secret == Array("from-the-environment-123".utf8) && configured.generatedPath == nil)
    }
}
