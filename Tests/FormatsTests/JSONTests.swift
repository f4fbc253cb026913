import Testing
import Formats
import TestSupport

@Suite struct JSONTests {
    private func text(_ value: JSON) -> String { String(decoding: value.serialized, as: UTF8.self) }

    @Test func parsesEveryKindOfValueKeepingMemberOrderAndRepeats() throws {
        let value = try JSON.parse(#" { "b" : [1, -2.5, "x", true, false, null, {}, []], "a": {"k": 1}, "b": 7 } "#)
        #expect(value.members?.map(\.key) == ["b", "a", "b"])
        #expect(value["b"] == .int(7))
        #expect(value["a"]?["k"] == .int(1))
        #expect(value.members?[0].value == .array([.int(1), .double(-2.5), .string("x"), .bool(true), .bool(false),
                                                   .null, .object([]), .array([])]))
    }

    @Test func malformedInputNamesWhatAndWhere() {
        let cases: [(String, String, Int)] = [
            ("", "unexpected end of input", 0),
            ("{not json", "expected a string key", 1),
            (#"{"a" 1}"#, "expected ':'", 5),
            (#"{"a":1 "b":2}"#, "expected ',' or '}'", 7),
            ("[1 2]", "expected ',' or ']'", 3),
            ("[1,]", "unexpected character", 3),
            ("tru", "unexpected end of input", 0),
            ("nul!", "invalid literal", 0),
            ("01", "leading zero in number", 1),
            ("-", "invalid number", 1),
            ("1.", "digit expected after '.'", 2),
            ("1e+", "digit expected in exponent", 3),
            ("\"a\u{01}\"", "control character in string", 2),
            (#""\x""#, "invalid escape", 2),
            (#""\u12G4""#, "invalid \\u escape", 5),
            (#""\u12""#, "truncated \\u escape", 3),
            (#""abc"#, "unterminated string", 4),
            ("1 2", "unexpected data after the JSON document", 2),
        ]
        for (input, message, offset) in cases {
            #expect(throws: JSONError(message, offset: offset), "\(input)") { try JSON.parse(input) }
        }
        #expect(JSONError("x", offset: 3).description == "invalid JSON at byte 3: x")
    }

    @Test func integersStayExactBeyondTwoToThe53AndOverflowBecomesDouble() throws {
        #expect(try JSON.parse("9007199254740993") == .int(9_007_199_254_740_993))
        #expect(try JSON.parse("9223372036854775807") == .int(.max))
        #expect(try JSON.parse("-9223372036854775808") == .int(.min))
        #expect(try JSON.parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try JSON.parse("-9223372036854775809") == .double(-9_223_372_036_854_775_808))
        #expect(try JSON.parse("123456789012345678901234567890") == .double(1.2345678901234568e29))
        #expect(try JSON.parse("-0") == .int(0))
        #expect(try JSON.parse("1.0") == .double(1))
    }

    @Test func exponentsAndFractionsAreCorrectlyRounded() throws {
        let cases: [(String, Double)] = [
            ("1e3", 1000), ("1E+3", 1000), ("2.5e-3", 0.0025), ("-1.25E2", -125), ("0.1", 0.1),
            ("1e22", 1e22), ("1e23", 1e23), ("2.2250738585072014e-308", 2.2250738585072014e-308),
            ("4.9e-324", Double.leastNonzeroMagnitude), ("1.7976931348623157e308", 1.7976931348623157e308),
            ("0.30000000000000004", 0.30000000000000004), ("1e400", .infinity), ("-1e400", -.infinity),
            ("1e-400", 0), ("12345678901234567890.5", 12_345_678_901_234_567_890.5),
        ]
        for (input, expected) in cases {
            #expect(try JSON.parse(input) == .double(expected), "\(input)")
        }
        // Random doubles round-trip through their shortest text.
        var random = SeededGenerator(seed: 12)
        for _ in 0..<2000 {
            let d = Double(bitPattern: random.next() & 0x7FEF_FFFF_FFFF_FFFF)
            let parsed = try JSON.parse(d.description)
            #expect(parsed.doubleValue == d, "\(d)")
        }
    }

    @Test func nestingIsBoundedWithoutExhaustingTheStack() throws {
        let deep = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
        #expect(throws: JSONError("nesting deeper than 64", offset: 64)) { try JSON.parse(deep) }
        let objects = String(repeating: #"{"a":"#, count: 100_000)
        #expect(throws: JSONError("nesting deeper than 64", offset: 320)) { try JSON.parse(objects) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try JSON.parse(ok)
        #expect(throws: JSONError("nesting deeper than 3", offset: 3)) { try JSON.parse("[[[[]]]]", maxDepth: 3) }
    }

    @Test func escapesDecodeIncludingSurrogatePairsAndLoneSurrogates() throws {
        #expect(try JSON.parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{08}\u{0C}\n\r\t"))
        #expect(try JSON.parse(#""\u00e9\u4e2d\ud83d\ude00""#) == .string("é中😀"))
        #expect(try JSON.parse(#""a\ud83dz""#) == .string("a\u{FFFD}z"))
        #expect(try JSON.parse(#""\ude00""#) == .string("\u{FFFD}"))
        #expect(try JSON.parse(#""\ud83d\u0041""#) == .string("\u{FFFD}A"))
    }

    @Test func invalidUTF8InTheInputBecomesTheReplacementCharacter() throws {
        let bytes: [UInt8] = [0x22, 0x61, 0xFF, 0xC3, 0x22]
        #expect(try JSON.parse(bytes) == .string("a\u{FFFD}\u{FFFD}"))
    }

    @Test func writerEscapesControlsQuotesAndBackslashesAndKeepsNonASCII() {
        var controls = ""
        for c in 0..<0x20 { controls.unicodeScalars.append(Unicode.Scalar(UInt8(c))) }
        let written = text(.string(controls + "\"\\/<>&é😀\u{7F}"))
        #expect(written == #""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\t\n\u000b\u000c\r\u000e\u000f"#
            + #"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f"#
            + "\\\"\\\\/<>&é😀\u{7F}\"")
        var html: [UInt8] = []
        JSONWriter.appendQuoted("<a href=\"x\">&</a>", to: &html, escapingHTML: true)
        #expect(String(decoding: html, as: UTF8.self) == #""\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e""#)
    }

    @Test func writerNumbers() {
        #expect(text(.array([.int(0), .int(-7), .int(.max), .int(.min), .double(1.5), .double(3), .double(-0.0),
                             .double(1e-7), .double(1e300), .double(.nan), .double(.infinity)]))
            == "[0,-7,9223372036854775807,-9223372036854775808,1.5,3.0,-0.0,1e-07,1e+300,null,null]")
        var out: [UInt8] = []
        JSONWriter.appendPadded(7, width: 3, to: &out)
        JSONWriter.appendPadded(-42, width: 4, to: &out)
        JSONWriter.appendPadded(12345, width: 2, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "007-004212345")
    }

    @Test func randomDocumentsRoundTrip() throws {
        var random = SeededGenerator(seed: 7)
        func make(_ depth: Int) -> JSON {
            switch Int(random.next() % (depth > 3 ? 5 : 7)) {
            case 0: return .null
            case 1: return .bool(random.next() & 1 == 0)
            case 2: return .int(Int64(bitPattern: random.next()) >> Int64(random.next() % 64))
            case 3: return .double(Double(Int64(bitPattern: random.next()) % 1_000_000_000) + 0.25)
            case 4:
                let scalars = (0..<Int(random.next() % 8)).map { _ in
                    Unicode.Scalar(UInt32(random.next() % 0xD7FF)) ?? "a"
                }
                return .string(String(String.UnicodeScalarView(scalars)))
            case 5: return .array((0..<Int(random.next() % 4)).map { _ in make(depth + 1) })
            default: return .object((0..<Int(random.next() % 4)).map { k in JSONMember("k\(k)", make(depth + 1)) })
            }
        }
        for _ in 0..<500 {
            let value = make(0)
            #expect(try JSON.parse(value.serialized) == value)
        }
    }

    @Test func readerPrimitivesLetACallerReadAKnownShape() throws {
        let bytes = Array(#" {"id": 12, "name": "x"} "#.utf8)
        try bytes.withUnsafeBufferPointer { (p) throws(JSONError) in
            var reader = JSONReader(p)
            try reader.expect(UInt8(ascii: "{"), "'{'")
            var seen: [String: JSON] = [:]
            repeat {
                let key = try reader.readKey()
                seen[key] = try reader.readScalar()
            } while try !reader.separatorOrEnd(UInt8(ascii: "}"))
            try reader.expectEnd()
            #expect(seen == ["id": .int(12), "name": .string("x")])
        }
    }

    @Test func numberScanningOnItsOwn() {
        func double(_ s: String) -> Double? { Array(s.utf8).withUnsafeBufferPointer { JSONNumber.double($0) } }
        #expect(double("12.5") == 12.5)
        #expect(double("-3") == -3)
        #expect(double("12.5x") == nil)
        #expect(double("") == nil)
        #expect(double("+1") == nil)
    }
}
