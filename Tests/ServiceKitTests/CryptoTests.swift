import Foundation
import Testing
@testable import ServiceKit
import TestSupport

@Suite struct SHA256Tests {
    @Test func fips180ExampleVectors() {
        #expect(Hex.encode(SHA256.hash(bytes("abc"))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(SHA256.hash(bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(Hex.encode(SHA256.hash([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func oneMillionAsFedInUnevenPieces() {
        var hasher = SHA256()
        let piece = [UInt8](repeating: UInt8(ascii: "a"), count: 997)
        var left = 1_000_000
        while left > 0 {
            let n = min(left, piece.count)
            hasher.update(Array(piece[0..<n]))
            left -= n
        }
        #expect(Hex.encode(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func incrementalUpdatesMatchOneShotAtEverySplit() {
        var rng = SeededGenerator(seed: 7)
        let message = rng.bytes(200)
        let whole = SHA256.hash(message)
        for split in 0...message.count {
            var hasher = SHA256()
            hasher.update(Array(message[0..<split]))
            hasher.update(Array(message[split...]))
            #expect(hasher.finalize() == whole, "split at \(split)")
        }
    }

    @Test(.enabled(if: Peers.runPython)) func matchesPythonHashlibOnRandomInputs() throws {
        var rng = SeededGenerator(seed: 0x5EED)
        // Lengths around the padding boundaries (55/56/64 bytes) plus random ones.
        var lengths = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]
        for _ in 0..<50 { lengths.append(Int.random(in: 0...3000, using: &rng)) }
        let messages = lengths.map { rng.bytes($0) }
        let output = try Peers.python("""
            import sys, hashlib
            for line in open(sys.argv[1]):
                print(hashlib.sha256(bytes.fromhex(line.strip())).hexdigest())
            """, input: messages.map { Hex.encode($0) + "\n" }.joined())
        try #require(output.count == messages.count)
        for (message, expected) in zip(messages, output) {
            #expect(Hex.encode(SHA256.hash(message)) == expected, "length \(message.count)")
        }
    }
}

@Suite struct HMACTests {
    /// RFC 4231 section 4: (key, data, expected HMAC-SHA-256; test case 5 is truncated to 128 bits).
    static let rfc4231: [(key: [UInt8], data: [UInt8], mac: String)] = [
        ([UInt8](repeating: 0x0b, count: 20), bytes("Hi There"),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (bytes("Jefe"), bytes("what do ya want for nothing?"),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (Array(1...25), [UInt8](repeating: 0xcd, count: 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        ([UInt8](repeating: 0x0c, count: 20), bytes("Test With Truncation"),
         "a3b6167473100ee06e0c796c2955552b"),
        ([UInt8](repeating: 0xaa, count: 131), bytes("Test Using Larger Than Block-Size Key - Hash Key First"),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ([UInt8](repeating: 0xaa, count: 131),
         bytes("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ]

    @Test(arguments: 0..<7) func rfc4231TestCase(index: Int) throws {
        let (key, data, mac) = Self.rfc4231[index]
        let tag = HMACSHA256.authenticate(data, key: key)
        let expected = try #require(Hex.decode(mac))
        #expect(Array(tag.prefix(expected.count)) == expected, "test case \(index + 1)")
    }

    @Test func oneKeyAuthenticatesManyMessagesIndependently() {
        let mac = HMACSHA256(key: bytes("Jefe"))
        let first = mac.authenticate(bytes("what do ya want for nothing?"))
        _ = mac.authenticate(bytes("something else entirely"))
        #expect(mac.authenticate(bytes("what do ya want for nothing?")) == first)
    }

    @Test(.enabled(if: Peers.runPython)) func matchesPythonHmacOnRandomInputs() throws {
        var rng = SeededGenerator(seed: 42)
        var cases: [([UInt8], [UInt8])] = []
        for keyLength in [0, 1, 31, 32, 63, 64, 65, 200] {
            cases.append((rng.bytes(keyLength), rng.bytes(Int.random(in: 0...300, using: &rng))))
        }
        for _ in 0..<40 {
            cases.append((rng.bytes(Int.random(in: 0...150, using: &rng)), rng.bytes(Int.random(in: 0...2000, using: &rng))))
        }
        let output = try Peers.python("""
            import sys, hmac, hashlib
            for line in open(sys.argv[1]):
                k, m = line.split(",")
                print(hmac.new(bytes.fromhex(k), bytes.fromhex(m.strip()), hashlib.sha256).hexdigest())
            """, input: cases.map { Hex.encode($0.0) + "," + Hex.encode($0.1) + "\n" }.joined())
        try #require(output.count == cases.count)
        for ((key, message), expected) in zip(cases, output) {
            #expect(Hex.encode(HMACSHA256.authenticate(message, key: key)) == expected,
                    "key \(key.count) bytes, message \(message.count) bytes")
        }
    }
}

@Suite struct PBKDF2Tests {
    @Test func wellKnownSHA256Vectors() throws {
        #expect(Hex.encode(try PBKDF2.deriveKey(password: bytes("password"), salt: bytes("salt"), iterations: 1))
            == "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b")
        #expect(Hex.encode(try PBKDF2.deriveKey(password: bytes("password"), salt: bytes("salt"), iterations: 2))
            == "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43")
        #expect(Hex.encode(try PBKDF2.deriveKey(password: bytes("password"), salt: bytes("salt"), iterations: 4096))
            == "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a")
        #expect(Hex.encode(try PBKDF2.deriveKey(password: bytes("passwordPASSWORDpassword"),
                                                salt: bytes("saltSALTsaltSALTsaltSALTsaltSALTsalt"),
                                                iterations: 4096, keyLength: 40))
            == "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9")
    }

    @Test func rfc7914Vectors() throws {
        #expect(Hex.encode(try PBKDF2.deriveKey(password: bytes("passwd"), salt: bytes("salt"), iterations: 1, keyLength: 64))
            == "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")
        #expect(Hex.encode(try PBKDF2.deriveKey(password: bytes("Password"), salt: bytes("NaCl"), iterations: 80000, keyLength: 64))
            == "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d")
    }

    @Test func rejectsZeroIterationsAndBadLengths() {
        #expect(throws: CryptoError.invalidIterationCount(0)) {
            try PBKDF2.deriveKey(password: [], salt: [], iterations: 0)
        }
        #expect(throws: CryptoError.invalidKeyLength(0)) {
            try PBKDF2.deriveKey(password: [], salt: [], iterations: 1, keyLength: 0)
        }
        #expect(throws: CryptoError.invalidKeyLength(-5)) {
            try PBKDF2.deriveKey(password: [], salt: [], iterations: 1, keyLength: -5)
        }
    }

    @Test(.enabled(if: Peers.runPython)) func matchesPythonOnRandomInputs() throws {
        var rng = SeededGenerator(seed: 99)
        var cases: [(password: [UInt8], salt: [UInt8], iterations: Int, length: Int)] = []
        for _ in 0..<25 {
            cases.append((rng.bytes(Int.random(in: 0...100, using: &rng)), rng.bytes(Int.random(in: 0...40, using: &rng)),
                          Int.random(in: 1...300, using: &rng), Int.random(in: 1...100, using: &rng)))
        }
        let output = try Peers.python("""
            import sys, hashlib
            for line in open(sys.argv[1]):
                p, s, c, n = line.strip().split(",")
                print(hashlib.pbkdf2_hmac("sha256", bytes.fromhex(p), bytes.fromhex(s), int(c), int(n)).hex())
            """, input: cases.map { "\(Hex.encode($0.password)),\(Hex.encode($0.salt)),\($0.iterations),\($0.length)\n" }.joined())
        try #require(output.count == cases.count)
        for (c, expected) in zip(cases, output) {
            let derived = try PBKDF2.deriveKey(password: c.password, salt: c.salt, iterations: c.iterations, keyLength: c.length)
            #expect(Hex.encode(derived) == expected)
        }
    }

    /// The production setting (600,000 iterations) agrees with Python; prints the time it took
    /// (informational only, never asserted). Optimised builds only: unoptimised code needs ~30 s
    /// here. Run it with `swift test -c release --filter PBKDF2Tests`.
    @Test(.enabled(if: Peers.runPython && optimizedBuild)) func recommendedIterationCountMatchesPython() throws {
        let password = bytes("correct horse battery staple"), salt = bytes("0123456789abcdef")
        let start = ContinuousClock.now
        let derived = try PBKDF2.deriveKey(password: password, salt: salt, iterations: PBKDF2.recommendedIterations)
        let elapsed = ContinuousClock.now - start
        print("PBKDF2-HMAC-SHA256 \(PBKDF2.recommendedIterations) iterations: \(elapsed)")
        let output = try Peers.python("""
            import sys, hashlib
            p, s, c = open(sys.argv[1]).read().strip().split(",")
            print(hashlib.pbkdf2_hmac("sha256", bytes.fromhex(p), bytes.fromhex(s), int(c)).hex())
            """, input: "\(Hex.encode(password)),\(Hex.encode(salt)),\(PBKDF2.recommendedIterations)")
        #expect(output == [Hex.encode(derived)])
    }
}

@Suite struct SmallPrimitiveTests {
    @Test func constantTimeEqualsComparesWholeContents() {
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([9, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
        #expect(ConstantTime.equals([], []))
    }

    @Test func secureRandomGivesFreshBytesOfTheRequestedLength() throws {
        let a = try SecureRandom.bytes(32), b = try SecureRandom.bytes(32)
        #expect(a.count == 32 && b.count == 32)
        #expect(a != b)
        #expect(try SecureRandom.bytes(0).isEmpty)
        #expect(try SecureRandom.bytes(100_000).count == 100_000)
    }

    @Test func base64URLRoundTripsEveryLengthWithoutPadding() {
        var rng = SeededGenerator(seed: 3)
        for length in 0..<70 {
            let data = rng.bytes(length)
            let text = Base64URL.encode(data)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(text) == data)
        }
        #expect(Base64URL.encode(bytes("any carnal pleas")) == "YW55IGNhcm5hbCBwbGVhcw")
        #expect(Base64URL.encode([0xfb, 0xff]) == "-_8")
    }

    @Test func base64URLRejectsPaddingForeignCharactersAndNonCanonicalInput() {
        #expect(Base64URL.decode("YQ==") == nil)
        #expect(Base64URL.decode("a+b/") == nil)
        #expect(Base64URL.decode("YQ") == [0x61])
        #expect(Base64URL.decode("YR") == nil)      // unused bits set
        #expect(Base64URL.decode("YWJjZ") == nil)   // 4n + 1 characters
        #expect(Base64URL.decode("YW Jj") == nil)
    }

    @Test func hexRoundTripsAndRejectsOddOrForeignInput() {
        #expect(Hex.encode([0x00, 0xab, 0xff]) == "00abff")
        #expect(Hex.decode("00ABff") == [0x00, 0xab, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}

#if DEBUG
let optimizedBuild = false
#else
let optimizedBuild = true
#endif
