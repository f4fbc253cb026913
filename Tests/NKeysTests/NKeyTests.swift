// nkeys' text forms: base32, CRC16, prefixes, public keys and seeds, their errors, and key pairs
// checked against keys and signatures made by nats-server's test data and the Python nkeys package.

@testable import NKeys
import Glibc
import Testing

@Suite struct EncodingTests {
    @Test func base32IsRFC4648WithoutPadding() throws {
        // RFC 4648 section 10's vectors, padding removed.
        let vectors = ["": "", "f": "MY", "fo": "MZXQ", "foo": "MZXW6", "foob": "MZXW6YQ", "fooba": "MZXW6YTB",
                       "foobar": "MZXW6YTBOI"]
        for (plain, encoded) in vectors {
            #expect(Base32.encode(Array(plain.utf8)) == encoded)
            #expect(try Base32.decode(encoded) == Array(plain.utf8))
        }
    }

    @Test func base32RefusesWhatIsNotBase32() {
        for text in ["MZXW6YQ=", "mzxw6", "MZXW1", "M", "MZX", "MZXW6Y"] {
            #expect(throws: NKeyError.self, "\(text)") { try Base32.decode(text) }
        }
    }

    @Test func crc16IsXMODEM() {
        // The check value of CRC-16/XMODEM.
        #expect(CRC16.checksum(Array("123456789".utf8)) == 0x31C3)
        #expect(CRC16.checksum([UInt8]()) == 0)
    }

    @Test func base64SignaturesInBothForms() {
        let bytes: [UInt8] = [0xFB, 0xFF, 0x00, 0x10, 0x83]
        #expect(Base64.urlEncoded(bytes) == "-_8AEIM")
        #expect(Base64.standardEncoded(bytes) == "+/8AEIM=")
        #expect(Base64.decodeSignature("-_8AEIM") == bytes)
        #expect(Base64.decodeSignature("+/8AEIM=") == bytes)
        #expect(Base64.decodeSignature("-_8A\r\nEIM") == bytes)
        // Neither form: a padded URL text, an unpadded standard one, a foreign character.
        #expect(Base64.decodeSignature("-_8AEIM=") == nil)
        #expect(Base64.decodeSignature("+/8AEIM") == nil)
        #expect(Base64.decodeSignature("-_8A*IM") == nil)
        #expect(Base64.decodeSignature("A") == nil)
        #expect(Base64.decodeSignature("") == [])
    }
}

@Suite struct NKeyTests {
    // nats-server 2.9.10's reload_test.go configures this user with this seed.
    let userSeed = "SUAPM67TC4RHQLKBX55NIQXSMATZDOZK6FNEOSS36CAYA7F7TY66LP4BOM"
    let userPublic = "UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR"

    @Test func aKnownSeedMakesItsKnownPublicKey() throws {
        let pair = try NKeyPair(seed: userSeed)
        #expect(pair.prefix == .user)
        #expect(pair.publicKey.encoded == userPublic)
        #expect(pair.seed == userSeed)
        // nats-server's test operator seed; its public key as the Python nkeys package derives it.
        let operatorPair = try NKeyPair(seed: "SOAFYNORQLQFJYBYNUGC5D7SH2MXMUX5BFEWWGHN3EK4VGG5TPT5DZP7QU")
        #expect(operatorPair.prefix == .operator)
        #expect(operatorPair.publicKey.encoded == "OCAT33MTVU2VUOIMGNGUNXJ66AH2RLSDAF3MUBCYAY5QMIL65NQM6XQG")
    }

    @Test func signaturesMatchOtherImplementations() throws {
        let pair = try NKeyPair(seed: userSeed)
        let signature = try pair.sign(Array("nonce-1234".utf8))
        // The Python nkeys package's signature of the same text by the same seed (ed25519 is deterministic).
        #expect(Base64.standardEncoded(signature).replacing("+", with: "-").replacing("/", with: "_")
            == "PRxvhmf1TUQygXWqsOxLmQHNv1JEAMVojo1H6mfj5lBrMv_DjTUZuLEUcogDyh6LJjPqJOYJfIjhHtig9fIPCA==")
        let key = try NKeyPublicKey(userPublic, expecting: .user)
        #expect(key.verify(Array("nonce-1234".utf8), signature: signature))
        #expect(!key.verify(Array("nonce-1235".utf8), signature: signature))
    }

    @Test(arguments: NKeyPrefix.allCases.filter(\.isPublicRole))
    func generatedPairsRoundTrip(_ prefix: NKeyPrefix) throws {
        let pair = try NKeyPair.generate(prefix)
        let encoded = pair.publicKey.encoded
        #expect(encoded.count == 56)
        #expect(pair.seed.count == 58)
        #expect(encoded.first == Base32.encode([prefix.rawValue]).first)
        #expect(try NKeyPublicKey(encoded) == pair.publicKey)
        #expect(try NKeyPublicKey(encoded, expecting: prefix) == pair.publicKey)
        let again = try NKeyPair(seed: pair.seed)
        #expect(again.publicKey == pair.publicKey)
        #expect(again.prefix == prefix)
        let message = Array("a message".utf8)
        #expect(pair.publicKey.verify(message, signature: try again.sign(message)))
    }

    @Test func twoGeneratedPairsDiffer() throws {
        #expect(try NKeyPair.generate(.user).seed != NKeyPair.generate(.user).seed)
    }

    @Test func publicKeyErrors() {
        // A changed character breaks the CRC.
        var characters = Array(userPublic)
        characters[10] = characters[10] == "A" ? "B" : "A"
        #expect(throws: NKeyError.invalidChecksum) { try NKeyPublicKey(String(characters)) }
        // A user key is not an account key.
        #expect(throws: NKeyError.invalidPrefix(expected: "account", found: NKeyPrefix.user.rawValue)) {
            try NKeyPublicKey(userPublic, expecting: .account)
        }
        // A seed is not a public key (36 bytes, not 35).
        #expect(throws: NKeyError.invalidLength(expected: 35, found: 36)) { try NKeyPublicKey(userSeed) }
        #expect(throws: NKeyError.invalidLength(expected: 35, found: 33)) { try NKeyPublicKey(String(userPublic.dropLast(3))) }
        #expect(throws: NKeyError.self) { try NKeyPublicKey(userPublic.lowercased()) }
        #expect(throws: NKeyError.self) { try NKeyPublicKey("") }
        // A well-formed key whose first byte is no role (a private key's prefix).
        let privateShaped = NKeyCodec.encode([NKeyPrefix.privateKey.rawValue] + [UInt8](repeating: 7, count: 32))
        #expect(throws: NKeyError.invalidPrefix(expected: "a public key", found: NKeyPrefix.privateKey.rawValue)) {
            try NKeyPublicKey(privateShaped)
        }
        #expect(NKeyPublicKey.isValid(userPublic, prefix: .user))
        #expect(!NKeyPublicKey.isValid(userPublic, prefix: .server))
    }

    @Test func seedErrors() {
        #expect(throws: NKeyError.invalidLength(expected: 36, found: 35)) { try NKeyPair(seed: userPublic) }
        var characters = Array(userSeed)
        characters[20] = characters[20] == "A" ? "B" : "A"
        #expect(throws: NKeyError.invalidChecksum) { try NKeyPair(seed: String(characters)) }
        // Right length and CRC, but the first byte is not a seed's.
        let notSeed = NKeyCodec.encode([NKeyPrefix.user.rawValue, 0] + [UInt8](repeating: 1, count: 32))
        #expect(throws: NKeyError.invalidPrefix(expected: "seed", found: NKeyPrefix.user.rawValue)) {
            try NKeyPair(seed: notSeed)
        }
        // A seed whose role is a private key.
        let role = NKeyPrefix.privateKey.rawValue
        let badRole = NKeyCodec.encode([NKeyPrefix.seed.rawValue | role >> 5, (role & 31) << 3]
            + [UInt8](repeating: 1, count: 32))
        #expect(throws: NKeyError.invalidPrefix(expected: "a public role in the seed", found: role)) {
            try NKeyPair(seed: badRole)
        }
        #expect(throws: NKeyError.invalidLength(expected: 32, found: 31)) {
            try NKeyPair(prefix: .user, rawSeed: [UInt8](repeating: 0, count: 31))
        }
        #expect(throws: NKeyError.invalidPrefix(expected: "a public role", found: NKeyPrefix.seed.rawValue)) {
            try NKeyPair(prefix: .seed, rawSeed: [UInt8](repeating: 0, count: 32))
        }
    }

    @Test func oneLineThatIsNoSeedSaysWhy() {
        #expect(throws: NKeyError.invalidChecksum) { try NKeyPair.fromSeedText(String(userSeed.dropLast()) + "A") }
        #expect(throws: NKeyError.invalidLength(expected: 36, found: 35)) { try NKeyPair.fromSeedText(userPublic) }
        #expect(throws: NKeyError.self) { try NKeyPair.fromSeedText("  not*base32\n") }
        #expect(throws: NKeyError.noSeedFound) { try NKeyPair.fromSeedText("") }
    }

    @Test func aKeyPairPrintsItsPublicKeyOnly() throws {
        let pair = try NKeyPair(seed: userSeed)
        let seedPart = String(userSeed.dropFirst(2).prefix(20))
        for text in [String(describing: pair), String(reflecting: pair), "\(pair)", "\(Mirror(reflecting: pair).children.map { "\($0)" })"] {
            #expect(text.contains(userPublic))
            #expect(!text.contains(seedPart), "\(text)")
        }
        var dumped = ""
        dump(pair, to: &dumped)
        #expect(dumped.contains(userPublic))
        #expect(!dumped.contains(seedPart))
        #expect(!Mirror(reflecting: pair).children.contains { $0.label == "rawSeed" })
    }

    @Test func seedFilesAsTheNATSToolsWriteThem() throws {
        let decorated = """
            -----BEGIN USER NKEY SEED-----
              \(userSeed)
            ------END USER NKEY SEED------

            """
        #expect(try NKeyPair.fromSeedText(decorated).publicKey.encoded == userPublic)
        #expect(try NKeyPair.fromSeedText("\(userSeed)\n").publicKey.encoded == userPublic)
        #expect(throws: NKeyError.noSeedFound) { try NKeyPair.fromSeedText("\(userPublic)\nSOMETHING\n") }

        let path = "/tmp/nkeys-test-\(getpid()).nk"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(fd >= 0)
        _ = Array(decorated.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        #expect(try NKeyPair.fromSeedFile(path).publicKey.encoded == userPublic)
        #expect(throws: NKeyError.unreadableFile(path: path + ".missing", errno: ENOENT)) {
            try NKeyPair.fromSeedFile(path + ".missing")
        }
    }
}
