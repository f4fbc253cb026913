import Testing
@testable import NATSProtocol

@Suite struct SubjectTests {
    static let validSubscribeSubjects = [
        "foo", "foo.bar", "foo.bar.baz", "*", ">", "foo.*", "*.bar", "foo.*.baz", "foo.>", "*.>", "*.*.*",
        "foo*.bar", "foo.b*r", "foo.>bar", "foo>.x", "$SYS.REQ.SERVER.PING", "_INBOX.abc.*", "ünï.cødé",
        "a-b_c.d:e", "x.y.z.w.v.u.t.s",
    ]
    static let invalidSubscribeSubjects = [
        "", ".", "..", "foo.", ".foo", "foo..bar", "foo.>.bar", ">.foo", ">.>", "foo bar", "foo\tbar",
        "foo\rbar", "foo\nbar", "foo\u{0C}bar", " foo", "foo. .bar", "foo.> ",
    ]

    @Test(arguments: validSubscribeSubjects)
    func validSubscribeSubjectsAreAccepted(subject: String) {
        #expect(Subject.isValid(subject))
        #expect(Subject.isValid(Array(subject.utf8)))
    }

    @Test(arguments: invalidSubscribeSubjects)
    func invalidSubscribeSubjectsAreRejected(subject: String) {
        #expect(!Subject.isValid(subject))
    }

    @Test func literalCheckRejectsWildcardTokensAndEmptyTokensOnly() {
        for literal in ["foo", "foo.bar", "foo*.bar", "a.b>", "$SYS.x", "_INBOX.1.2"] {
            #expect(Subject.isValidLiteral(literal), "\(literal)")
        }
        for nonLiteral in ["*", ">", "foo.*", "foo.>", "*.bar", "a.*.c", "", "foo.", "foo..bar", ".foo"] {
            #expect(!Subject.isValidLiteral(nonLiteral), "\(nonLiteral)")
        }
    }

    @Test func queueNamesNeedOnlyBeNonEmptyWithoutWhitespace() {
        for queue in ["workers", "auth-workers", "q.1", "q*", ">"] { #expect(Subject.isValidQueue(queue)) }
        for queue in ["", "two words", "tab\there", "cr\r", "lf\n"] { #expect(!Subject.isValidQueue(queue)) }
    }

    @Test func tokenizerYieldsEveryTokenIncludingEmptyOnes() {
        func tokens(_ subject: String) -> [String] {
            Array(subject.utf8).withUnsafeBytes { raw in
                Subject.tokens(raw).map { String(decoding: $0, as: UTF8.self) }
            }
        }
        #expect(tokens("a.bb.ccc") == ["a", "bb", "ccc"])
        #expect(tokens("single") == ["single"])
        #expect(tokens("") == [""])
        #expect(tokens("a..b") == ["a", "", "b"])
        #expect(tokens("a.") == ["a", ""])
        #expect(tokens(".a") == ["", "a"])
    }

    @Test func hasWildcardSeesOnlyWholeTokenWildcards() {
        let cases: [(String, Bool)] = [("a.*", true), ("a.>", true), ("*", true), ("a.b", false), ("a*.b>", false)]
        for (subject, expected) in cases {
            let got = Array(subject.utf8).withUnsafeBytes { Subject.hasWildcard($0) }
            #expect(got == expected, "\(subject)")
        }
    }

    @Test func patternMatchingFollowsWildcardRules() {
        let cases: [(String, String, Bool)] = [
            ("foo.bar", "foo.bar", true), ("foo.bar", "foo.baz", false), ("foo.*", "foo.bar", true),
            ("foo.*", "foo", false), ("foo.*", "foo.bar.baz", false), ("foo.>", "foo.bar.baz", true),
            ("foo.>", "foo", false), (">", "anything.at.all", true), ("*.*", "a.b", true), ("*.*", "a", false),
            ("a.*.c", "a.b.c", true), ("a.*.c", "a.b.d", false), ("foo.bar", "foo.*", false),
        ]
        for (pattern, subject, expected) in cases {
            #expect(Subject.matches(pattern: pattern, subject: subject) == expected, "\(pattern) vs \(subject)")
        }
    }
}
