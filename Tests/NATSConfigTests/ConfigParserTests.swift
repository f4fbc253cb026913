import Foundation
import Testing

@testable import NATSConfig

private func parse(_ text: String, env: [String: String] = [:]) throws -> ConfigMap {
    try ConfigParser.parse(text, file: "test.conf", environment: env)
}

private func parseError(_ text: String, env: [String: String] = [:]) -> ConfigError? {
    do {
        _ = try ConfigParser.parse(text, file: "test.conf", environment: env)
        return nil
    } catch {
        return error
    }
}

/// A fresh folder for files that includes refer to.
private func temporaryFolder() throws -> String {
    let path = NSTemporaryDirectory() + "natsconfig-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite("nats.conf syntax")
struct ConfigSyntaxTests {
    @Test("'=', ':' and a space all assign", arguments: ["port = 4222", "port: 4222", "port 4222", "port=4222", "port:4222"])
    func assignmentForms(text: String) throws {
        #expect(try parse(text)["port"]?.value == .integer(4222))
    }

    @Test func valuesEndAtNewLineCommaOrSemicolon() throws {
        let map = try parse("a: 1; b: 2, c: 3\nd: 4")
        #expect(map.entries.map(\.key) == ["a", "b", "c", "d"])
        #expect(map["d"]?.value == .integer(4))
    }

    @Test func hashAndSlashCommentsAreIgnoredEverywhere() throws {
        let map = try parse(
            """
            # leading comment
            port: 4222 # trailing
            // another
            list: [1, # in an array
              2 // again
            ]
            block { a: 1 # in a map
            }
            """)
        #expect(map["port"]?.value == .integer(4222))
        #expect(map["list"]?.value == .array([
            ConfigNode(.integer(1), at: SourceLocation(file: "test.conf", line: 4, column: 8)),
            ConfigNode(.integer(2), at: SourceLocation(file: "test.conf", line: 5, column: 3)),
        ]))
        #expect(try map["block"]?.map(for: "block")["a"]?.value == .integer(1))
    }

    @Test func jsonWithCommentsIsAccepted() throws {
        let map = try parse(
            """
            {
              "port": 4222, // the client port
              "authorization": {"users": [{"user": "a", "password": "b"}]}
            }
            """)
        #expect(map["port"]?.value == .integer(4222))
        let users = try #require(try map["authorization"]?.map(for: "authorization")["users"]?.array(for: "users"))
        #expect(try users.first?.map(for: "user")["password"]?.string(for: "password") == "b")
    }

    @Test func aMapNeedsNoSeparatorAndKeepsOrder() throws {
        let map = try parse("cluster { name: demo, listen: 127.0.0.1:6222 }\nport: 1")
        let cluster = try #require(try map["cluster"]?.map(for: "cluster"))
        #expect(cluster.entries.map(\.key) == ["name", "listen"])
        #expect(cluster["listen"]?.value == .string("127.0.0.1:6222"))
    }

    @Test func arraysTakeCommasOrNewLinesAndNest() throws {
        let map = try parse("a: [1, 2,\n 3\n [x, y]]\nb: []")
        guard case .array(let items)? = map["a"]?.value else {
            Issue.record("a is not an array")
            return
        }
        #expect(items.count == 4)
        #expect(items[3].value == .array([
            ConfigNode(.string("x"), at: SourceLocation(file: "test.conf", line: 3, column: 3)),
            ConfigNode(.string("y"), at: SourceLocation(file: "test.conf", line: 3, column: 6)),
        ]))
        #expect(map["b"]?.value == .array([]))
    }

    @Test func stringsQuotedRawAndBare() throws {
        let map = try parse(
            #"""
            a: "tab\there \"q\" back\\slash \x41"
            b: 'raw \t $NOT_A_VAR'
            c: bare-word.with:colons
            d: "$NOT_A_VAR"
            """#)
        #expect(map["a"]?.value == .string("tab\there \"q\" back\\slash A"))
        #expect(map["b"]?.value == .string(#"raw \t $NOT_A_VAR"#))
        #expect(map["c"]?.value == .string("bare-word.with:colons"))
        #expect(map["d"]?.value == .string("$NOT_A_VAR"))
    }

    @Test("booleans in every spelling", arguments: [
        ("true", true), ("TRUE", true), ("yes", true), ("on", true), ("false", false), ("No", false), ("off", false),
    ])
    func booleans(text: String, expected: Bool) throws {
        #expect(try parse("debug: \(text)")["debug"]?.value == .bool(expected))
    }

    static let sizeCases: [(String, Int64)] = [
        ("1", 1), ("1k", 1000), ("1K", 1000), ("1kb", 1024), ("1KB", 1024), ("1ki", 1024), ("1KiB", 1024),
        ("2m", 2_000_000), ("2MB", 2 << 20), ("2mi", 2 << 20), ("3g", 3_000_000_000), ("3gb", 3 << 30),
        ("1t", 1_000_000_000_000), ("1tb", 1 << 40), ("1p", 1_000_000_000_000_000), ("1pib", 1 << 50),
        ("1e", 1_000_000_000_000_000_000), ("1eb", 1 << 60), ("-5", -5), ("64MB", 64 << 20),
    ]

    @Test("size suffixes: k m g t p e decimal, kb/ki/kib binary, any case", arguments: sizeCases)
    func sizeSuffixes(text: String, expected: Int64) throws {
        #expect(try parse("max_pending: \(text)")["max_pending"]?.value == .integer(expected))
    }

    @Test func floatsDatesAndAddresses() throws {
        let map = try parse("a: 2.5\nb: 2016-05-04T18:53:41Z\nc: 127.0.0.1\nd: 10.0.0.1:4222\ne: -0.5")
        #expect(map["a"]?.value == .float(2.5))
        #expect(map["b"]?.value == .datetime("2016-05-04T18:53:41Z"))
        #expect(map["c"]?.value == .string("127.0.0.1"))
        #expect(map["d"]?.value == .string("10.0.0.1:4222"))
        #expect(map["e"]?.value == .float(-0.5))
    }

    @Test func aKeySetTwiceKeepsTheLastValue() throws {
        let map = try parse("port: 1\nport: 2")
        #expect(map.entries.count == 1)
        #expect(map["port"]?.value == .integer(2))
    }

    @Test func blocksAreRawTextUpToACloserOnItsOwnLine() throws {
        let map = try parse("text: (\nline one (with parens)\nline two\n)\nafter: 1")
        #expect(map["text"]?.value == .string("\nline one (with parens)\nline two"))
        #expect(map["after"]?.value == .integer(1))
    }

    @Test func locationsAreOneBasedLineAndColumn() throws {
        let map = try parse("\n  port: 4222\n")
        let entry = try #require(map.entry("port"))
        #expect(entry.keyLocation == SourceLocation(file: "test.conf", line: 2, column: 3))
        #expect(entry.node.location == SourceLocation(file: "test.conf", line: 2, column: 9))
    }

    @Test func keysAreLookedUpCaseInsensitively() throws {
        #expect(try parse("Max_Payload: 5")["max_payload"]?.value == .integer(5))
    }
}

@Suite("nats.conf variables")
struct ConfigVariableTests {
    @Test func aVariableResolvesFromTheInnermostEnclosingMap() throws {
        let map = try parse(
            """
            TOKEN = outer
            authorization {
              TOKEN = inner
              token: $TOKEN
            }
            other: $TOKEN
            """)
        let auth = try #require(try map["authorization"]?.map(for: "authorization"))
        #expect(auth["token"]?.value == .string("inner"))
        #expect(map["other"]?.value == .string("outer"))
    }

    @Test func usedDefinitionsAreMarkedAndUnusedOnesAreSettings() throws {
        let map = try parse("USED = 1\nUNUSED = 2\nport: $USED")
        #expect(map.entry("USED")?.isUsedVariable == true)
        #expect(map.entry("UNUSED")?.isUsedVariable == false)
        #expect(map.settings.map(\.key) == ["UNUSED", "port"])
    }

    @Test func theEnvironmentIsTheOutermostScopeAndItsTextIsParsedAsAValue() throws {
        let map = try parse("port: $PORT\nname: $NAME\nsize: $SIZE", env: ["PORT": "4333", "NAME": "srv", "SIZE": "2KB"])
        #expect(map["port"]?.value == .integer(4333))
        #expect(map["name"]?.value == .string("srv"))
        #expect(map["size"]?.value == .integer(2048))
    }

    @Test func theFileWinsOverTheEnvironment() throws {
        #expect(try parse("PORT = 1\nport: $PORT", env: ["PORT": "2"])["port"]?.value == .integer(1))
    }

    @Test func anUnresolvedVariableNamesItselfAndItsLine() throws {
        let error = try #require(parseError("port: 4222\nmax_payload: $NOPE"))
        #expect(error.message == "variable reference for 'NOPE' on line 2 can not be found")
        #expect(error.location == SourceLocation(file: "test.conf", line: 2, column: 14))
        #expect(error.description == "test.conf:2:14: variable reference for 'NOPE' on line 2 can not be found")
    }

    @Test func aVariableMustBeTheWholeValue() throws {
        let error = try #require(parseError("P = 4222\nlisten: 127.0.0.1:$P"))
        #expect(error.location?.line == 2)
    }

    @Test func aRawBcryptHashIsAStringNotAReference() throws {
        let hash = "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG"
        #expect(try parse("password: \(hash)")["password"]?.value == .string(hash))
    }
}

@Suite("nats.conf includes")
struct ConfigIncludeTests {
    @Test func anIncludeIsRelativeToTheIncludingFileAndMergesWhereItStands() throws {
        let dir = try temporaryFolder()
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        try "users = [{user: a, password: b}]\n".write(toFile: dir + "/sub/users.conf", atomically: true, encoding: .utf8)
        try "port: 4222\nauthorization {\n  include ./users.conf\n}\n"
            .write(toFile: dir + "/sub/main.conf", atomically: true, encoding: .utf8)
        try "include 'sub/main.conf'\nmax_payload: 1KB\n".write(toFile: dir + "/top.conf", atomically: true, encoding: .utf8)

        let map = try ConfigParser.parse(contentsOf: dir + "/top.conf", environment: [:])
        #expect(map["port"]?.value == .integer(4222))
        #expect(map["max_payload"]?.value == .integer(1024))
        let auth = try #require(try map["authorization"]?.map(for: "authorization"))
        let users = try #require(try auth["users"]?.array(for: "users"))
        #expect(users.count == 1)
        // A node from an included file reports that file.
        #expect(users[0].location.file.hasSuffix("sub/users.conf"))
    }

    @Test func aMissingIncludeIsReportedAtTheIncludeLine() throws {
        let error = try #require(parseError("port: 1\ninclude ./missing.conf"))
        #expect(error.location == SourceLocation(file: "test.conf", line: 2, column: 1))
        #expect(error.message.contains("missing.conf"))
    }

    @Test func anIncludeCycleIsRefusedNotFollowedForever() throws {
        let dir = try temporaryFolder()
        try "include ./b.conf\n".write(toFile: dir + "/a.conf", atomically: true, encoding: .utf8)
        try "include ./a.conf\n".write(toFile: dir + "/b.conf", atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try ConfigParser.parse(contentsOf: dir + "/a.conf", environment: [:]) }
    }

    @Test func aMissingFileIsAClearError() throws {
        let error = try #require(throws: ConfigError.self) {
            try ConfigParser.parse(contentsOf: "/nonexistent/nats.conf", environment: [:])
        }
        #expect(error.description.contains("/nonexistent/nats.conf"))
    }
}

@Suite("nats.conf errors name file:line:column")
struct ConfigErrorTests {
    @Test("malformed input is refused at the right line", arguments: [
        ("port: 4222\ncluster {\n  name: x\n", 4),  // unclosed map: reported at EOF
        ("a: [1, 2\n", 2),  // unclosed array
        ("a: \"open\n\n", 3),  // unclosed string
        ("a: \"bad \\q escape\"", 1),
        ("a: 1abc", 1),
        ("a: .5", 1),
        ("a: [,1]", 1),
        ("port 4222 extra", 1),
        ("port:\n", 1),
        ("= 5", 1),
    ])
    func malformed(text: String, line: Int) throws {
        let error = try #require(parseError(text))
        #expect(error.location?.file == "test.conf")
        #expect(error.location?.line == line, "\(error)")
    }

    @Test func deepNestingIsBounded() throws {
        let text = "a: " + String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        let error = try #require(parseError(text))
        #expect(error.message.contains("nested"))
    }

    @Test func typedReadsNameTheKeyAndTheLocation() throws {
        let map = try parse("max_payload: \"1MB\"\nping_interval: \"2x\"\ndebug: 5")
        let quoted = try #require(throws: ConfigError.self) { try map["max_payload"]?.integer(for: "max_payload") }
        #expect(quoted.description.hasPrefix("test.conf:1:14: invalid value for \"max_payload\""))
        let duration = try #require(throws: ConfigError.self) { try map["ping_interval"]?.duration(for: "ping_interval") }
        #expect(duration.location?.line == 2)
        let bool = try #require(throws: ConfigError.self) { try map["debug"]?.bool(for: "debug") }
        #expect(bool.message.contains("found integer"))
    }
}

@Suite("durations in Go syntax")
struct GoDurationTests {
    @Test("valid durations", arguments: [
        ("2m", Duration.seconds(120)), ("500ms", .milliseconds(500)), ("1h30m", .seconds(5400)), ("10s", .seconds(10)),
        ("1.5s", .milliseconds(1500)), ("250us", .microseconds(250)), ("100ns", .nanoseconds(100)), ("0", .zero),
        ("-1s", .seconds(-1)),
    ])
    func valid(text: String, expected: Duration) {
        #expect(parseGoDuration(text) == expected)
    }

    @Test("invalid durations", arguments: ["", "5", "2x", "m", "1.2.3s", "s5"])
    func invalid(text: String) {
        #expect(parseGoDuration(text) == nil)
    }

    @Test func aBareIntegerIsSeconds() throws {
        #expect(try parse("ping_interval: 5")["ping_interval"]?.duration(for: "ping_interval") == .seconds(5))
    }
}

@Suite("the reference sample configurations")
struct ConfigSampleTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    @Test func serverAWithAuthorizationParses() throws {
        let map = try ConfigParser.parse(contentsOf: Self.fixtures.appendingPathComponent("sample_server_a_auth.conf").path, environment: [:])
        #expect(map["listen"]?.value == .string("127.0.0.1:14222"))
        #expect(map["max_payload"]?.value == .integer(1024))
        #expect(map["ping_interval"]?.value == .string("1s"))
        let users = try #require(try map["authorization"]?.map(for: "authorization")["users"]?.array(for: "users"))
        #expect(users.count == 2)
        let bob = try users[1].map(for: "users")
        let subscribe = try #require(try bob["permissions"]?.map(for: "permissions")["subscribe"]?.map(for: "subscribe"))
        #expect(try subscribe["allow"]?.stringList(for: "allow") == ["public.>", "_INBOX.>"])
    }

    @Test("cluster samples parse", arguments: ["sample_server_c1.conf", "sample_server_c2.conf"])
    func clusterSamplesParse(name: String) throws {
        let map = try ConfigParser.parse(contentsOf: Self.fixtures.appendingPathComponent(name).path, environment: [:])
        #expect(try map["cluster"]?.map(for: "cluster")["name"]?.value == .string("demo"))
    }
}

/// The parser reads files, paths and the environment with Glibc (the broker links no Foundation);
/// these pin that it reads them as Foundation did before.
@Suite("nats.conf host access matches Foundation")
struct ConfigHostTests {
    @Test func theEnvironmentIsProcessInfos() {
        #expect(ProcessEnvironment.current == ProcessInfo.processInfo.environment)
    }

    @Test func theCurrentFolderIsFileManagers() {
        #expect(HostFiles.currentDirectory == FileManager.default.currentDirectoryPath)
    }

    @Test func theFolderOfAPathIsNSStringsDeletingLastPathComponent() {
        for path in ["/etc/nats.conf", "/nats.conf", "nats.conf", "a/b/c.conf", "a//b//c.conf", "/a/b/", "/", ""] {
            #expect(HostFiles.directory(of: path) == (path as NSString).deletingLastPathComponent, "\(path)")
        }
    }

    @Test func anIncludePathResolvesAsNSStringStandardizedIt() throws {
        let dir = try temporaryFolder()
        try FileManager.default.createDirectory(atPath: dir + "/real/deeper", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/absolute-link", withDestinationPath: dir + "/real")
        try FileManager.default.createSymbolicLink(atPath: dir + "/relative-link", withDestinationPath: "real/deeper")
        let includes = ["users.conf", "./users.conf", "../users.conf", "a/./b/../c.conf", ".//x//y.conf/", "/etc/../etc/./x.conf",
                        "absolute-link/x.conf", "absolute-link/../x.conf", "relative-link/x.conf", "relative-link/../../x.conf",
                        "~/x.conf", "~root/x.conf", "~no-such-user-here/x.conf", "..", ".", "/"]
        for directory in [dir, dir + "/real/", "", "rel/dir", "/"] {
            for path in includes {
                let joined = path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
                let expected = (joined as NSString).standardizingPath
                #expect(HostFiles.resolve(path, relativeTo: directory) == expected, "\(directory) + \(path)")
            }
        }
    }

    @Test func aFolderIsReportedAsUnreadable() throws {
        let dir = try temporaryFolder()
        let error = try #require(throws: ConfigError.self) { try ConfigParser.parse(contentsOf: dir, environment: [:]) }
        #expect(error.message == "cannot read configuration file '\(dir)': Is a directory")
    }
}
