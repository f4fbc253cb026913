import Foundation
import NATSConfig
import Testing

@testable import NATSServer

// Expected lines were recorded from nats-server 2.9.10 with the same users and client actions.

private let usersConfig = """
    authorization {
      users = [
        {user: alice, password: secret}
        {user: bob, password: pw, permissions: {publish: {deny: ["secret.>"]}, subscribe: {allow: ["public.>", "_INBOX.>"]}}}
        {user: carol, password: pw, permissions: {subscribe: {allow: ["public.*", "svc.>"], deny: ["public.secret"]}}}
        {user: dave, password: pw, permissions: {subscribe: {deny: "secret.>"}}}
        {user: svc, password: pw, permissions: {subscribe: "svc.>", allow_responses: true}}
        {user: svc2, password: pw, permissions: {publish: "ok.>", subscribe: "svc.>", allow_responses: {max: 2}}}
        {user: open, password: pw, permissions: {publish: [], subscribe: []}}
      ]
    }
    no_auth_user: bob
    """

private func permissionBroker() throws -> TestBroker {
    var parsed = Options()
    try parsed.apply(ConfigParser.parse(usersConfig, file: "nats.conf", environment: [:]))
    return try TestBroker {
        $0.users = parsed.users
        $0.noAuthUser = parsed.noAuthUser
    }
}

private extension TestBroker {
    func login(_ user: String, _ password: String, verbose: Bool = false) throws -> RawClient {
        try connected(#"{"verbose":\#(verbose),"pedantic":false,"user":"\#(user)","pass":"\#(password)"}"#)
    }
}

private func violation(publish subject: String) -> String {
    "-ERR 'Permissions Violation for Publish to \"\(subject)\"'"
}

private func violation(subscribe subject: String, queue: String? = nil) -> String {
    var text = "-ERR 'Permissions Violation for Subscription to \"\(subject)\""
    if let queue { text += " using queue \"\(queue)\"" }
    return text + "'"
}

@Suite("per-user permissions as nats-server 2.9.10 applies them")
struct PermissionTests {
    @Test func aDeniedPublishIsDroppedWithAViolationAndTheConnectionStaysOpen() throws {
        let broker = try permissionBroker()
        let watcher = try broker.login("alice", "secret")
        try watcher.send("SUB > 1\r\n")
        try watcher.sync()
        let bob = try broker.login("bob", "pw")
        try bob.send("PUB secret.x 1\r\na\r\nPUB public.x 1\r\nb\r\n")
        #expect(try bob.sync() == [violation(publish: "secret.x")])
        #expect(try watcher.sync() == ["MSG public.x 1 1", "b"])
    }

    @Test func verboseSendsNoOKForRefusedOperationsAndKeepsOrder() throws {
        let broker = try permissionBroker()
        let bob = try broker.login("bob", "pw", verbose: true)
        try bob.send("PUB secret.x 1\r\na\r\nSUB private.y 1\r\nSUB private.y q 2\r\nSUB public.x 3\r\n")
        #expect(try bob.sync() == [
            violation(publish: "secret.x"), violation(subscribe: "private.y"),
            violation(subscribe: "private.y", queue: "q"), "+OK",
        ])
    }

    @Test func wildcardSubscriptionsAreAllowedOnlyWhenAnAllowPatternCoversThemTokenByToken() throws {
        let broker = try permissionBroker()
        let bob = try broker.login("bob", "pw")
        try bob.send("SUB public.* 1\r\nSUB > 2\r\nSUB public.> 3\r\nSUB _INBOX.* 4\r\nSUB * 5\r\nSUB public 6\r\n"
                     + "SUB public.a q 7\r\nSUB public.a _sys_ 8\r\nSUB public..x 9\r\n")
        #expect(try bob.sync() == [
            violation(subscribe: ">"), violation(subscribe: "*"), violation(subscribe: "public"),
            violation(subscribe: "public.a", queue: "_sys_"), violation(subscribe: "public..x"),
        ])
    }

    @Test func denyOverridesAllowButAWildcardOverlappingADenyIsAllowed() throws {
        let broker = try permissionBroker()
        let carol = try broker.login("carol", "pw")
        try carol.send("SUB public.* 1\r\nSUB public.> 2\r\nSUB public.secret 3\r\nSUB svc.* 4\r\n")
        #expect(try carol.sync() == [violation(subscribe: "public.secret")])
    }

    @Test func aWildcardSubscriptionOverlappingADenyDoesNotReceiveDeniedSubjects() throws {
        let broker = try permissionBroker()
        let dave = try broker.login("dave", "pw")
        try dave.send("SUB > 1\r\nSUB secret.x 2\r\n")
        #expect(try dave.sync() == [violation(subscribe: "secret.x")])
        let alice = try broker.login("alice", "secret")
        try alice.send("PUB secret.x 1\r\na\r\nPUB other.x 1\r\nb\r\n")
        try alice.sync()
        #expect(try dave.sync() == ["MSG other.x 1 1", "b"])
    }

    @Test func allowResponsesPermitsOneReplyPerRequestByDefault() throws {
        let broker = try permissionBroker()
        let svc = try broker.login("svc", "pw")
        try svc.send("SUB svc.> 1\r\nPUB anything 1\r\nx\r\n")
        #expect(try svc.sync() == [violation(publish: "anything")])
        let alice = try broker.login("alice", "secret")
        try alice.send("SUB _INBOX.r 1\r\nPUB svc.a _INBOX.r 2\r\nhi\r\n")
        try alice.sync()
        try svc.send("PUB _INBOX.r 2\r\nok\r\nPUB _INBOX.r 2\r\nno\r\n")
        #expect(try svc.sync() == ["MSG svc.a 1 _INBOX.r 2", "hi", violation(publish: "_INBOX.r")])
        #expect(try alice.sync() == ["MSG _INBOX.r 1 2", "ok"])
    }

    @Test func allowResponsesMaxSetsHowManyRepliesARequestAllows() throws {
        let broker = try permissionBroker()
        let svc = try broker.login("svc2", "pw")
        try svc.send("SUB svc.> 1\r\n")
        try svc.sync()
        let alice = try broker.login("alice", "secret")
        try alice.send("SUB _INBOX.r 1\r\nPUB svc.b _INBOX.r 2\r\nhi\r\n")
        try alice.sync()
        try svc.send("PUB _INBOX.r 2\r\nok\r\nPUB _INBOX.r 2\r\nok\r\nPUB _INBOX.r 2\r\nno\r\nPUB ok.x 1\r\nz\r\n")
        #expect(try svc.sync() == ["MSG svc.b 1 _INBOX.r 2", "hi", violation(publish: "_INBOX.r")])
        #expect(try alice.sync() == ["MSG _INBOX.r 1 2", "ok", "MSG _INBOX.r 1 2", "ok"])
    }

    @Test func requestReplyWorksForAUserAllowedToSubscribeToInbox() throws {
        let broker = try permissionBroker()
        let responder = try broker.login("alice", "secret")
        try responder.send("SUB public.echo 1\r\n")
        try responder.sync()
        let bob = try broker.login("bob", "pw")
        try bob.send("SUB _INBOX.abc.* 1\r\nPUB public.echo _INBOX.abc.1 4\r\nping\r\n")
        try bob.sync()
        #expect(try responder.sync() == ["MSG public.echo 1 _INBOX.abc.1 4", "ping"])
        try responder.send("PUB _INBOX.abc.1 4\r\npong\r\n")
        try responder.sync()
        #expect(try bob.sync() == ["MSG _INBOX.abc.1 1 4", "pong"])
    }

    @Test func aClientWithoutCredentialsIsTheNoAuthUser() throws {
        let broker = try permissionBroker()
        let anonymous = try broker.connected()
        try anonymous.send("PUB secret.x 1\r\na\r\nSUB x 1\r\nSUB public.x 2\r\n")
        #expect(try anonymous.sync() == [violation(publish: "secret.x"), violation(subscribe: "x")])
    }

    @Test func aWrongPasswordIsAnAuthorizationViolation() throws {
        let broker = try permissionBroker()
        let client = try broker.client()
        try client.send(#"CONNECT {"verbose":false,"user":"bob","pass":"nope"}"# + "\r\n")
        #expect(try client.linesUntilClosed() == ["-ERR 'Authorization Violation'"])
    }

    @Test func aUserWithoutPermissionsIsUnrestricted() throws {
        let broker = try permissionBroker()
        let alice = try broker.login("alice", "secret")
        try alice.send("SUB > 1\r\nSUB secret.* q 2\r\nPUB secret.x 1\r\na\r\n")
        #expect(try alice.sync() == ["MSG secret.x 1 1", "a", "MSG secret.x 2 1", "a"])
    }

    @Test func emptyPermissionListsRestrictNothing() throws {
        let broker = try permissionBroker()
        let client = try broker.login("open", "pw")
        try client.send("SUB a 1\r\nPUB a 1\r\nx\r\n")
        #expect(try client.sync() == ["MSG a 1 1", "x"])
    }

    @Test func reservedPrefixChecksComeBeforeAndAfterThePublishPermission() throws {
        let broker = try permissionBroker()
        let bob = try broker.login("bob", "pw")
        try bob.send("PUB _GR_.a.b.c 1\r\na\r\nPUB secret.y _R_.x 1\r\na\r\nPUB public.y _R_.x 1\r\na\r\n")
        #expect(try bob.sync() == [
            violation(publish: "_GR_.a.b.c"), violation(publish: "secret.y"),
            "-ERR 'Permissions Violation for Publish with Reply of \"_R_.x\"'",
        ])
    }

    @Test func thePublishCacheKeepsAnswersRightWhenSubjectsCollideInIt() throws {
        let broker = try permissionBroker()
        let bob = try broker.login("bob", "pw")
        var text = ""
        var expected: [String] = []
        for round in 0..<3 {
            for i in 0..<300 {
                let subject = i.isMultiple(of: 3) ? "secret.\(i)" : "public.\(i)"
                text += "PUB \(subject) 1\r\n\(round)\r\n"
                if i.isMultiple(of: 3) { expected.append(violation(publish: subject)) }
            }
        }
        try bob.send(text)
        #expect(try bob.sync() == expected)
    }
}

// Queue permissions: subscribe entries "subject queue". Expected answers recorded from
// nats-server 2.9.10 with the same users and SUBs.
private let queueConfig = """
    authorization {
      users = [
        {user: mixed, password: pw, permissions: {subscribe: ["foo", "foo v1", "bar.* v.*", "baz v*", "only  q1"]}}
        {user: denier, password: pw, permissions: {subscribe: {deny: ["dd v1", "both", "both v1", "x.> v2"]}}}
        {user: alice, password: pw}
      ]
    }
    """

private func queueBroker(logFile: String? = nil) throws -> TestBroker {
    var parsed = Options()
    try parsed.apply(ConfigParser.parse(queueConfig, file: "nats.conf", environment: [:]))
    return try TestBroker {
        $0.users = parsed.users
        if let logFile {
            $0.noLog = false
            $0.logFile = logFile
            $0.logTime = false
        }
    }
}

@Suite("queue permissions (\"subject queue\" entries) as nats-server 2.9.10 applies them")
struct QueuePermissionTests {
    @Test func anAllowListWithQueueEntriesAdmitsOnlyTheirQueuesForThatSubject() throws {
        let broker = try queueBroker()
        let client = try broker.login("mixed", "pw")
        try client.send("SUB foo 1\r\nSUB foo v1 2\r\nSUB foo v2 3\r\nSUB only 4\r\nSUB only q1 5\r\nSUB only q2 6\r\n")
        #expect(try client.sync() == [
            violation(subscribe: "foo", queue: "v2"), violation(subscribe: "only"),
            violation(subscribe: "only", queue: "q2"),
        ])
    }

    @Test func aQueuePatternIsAWildcardOnlyWhenItHasAWildcardToken() throws {
        let broker = try queueBroker()
        let client = try broker.login("mixed", "pw")
        try client.send("SUB bar.x v.1 1\r\nSUB bar.x v.1.2 2\r\nSUB bar.x 3\r\nSUB bar.* v.* 4\r\nSUB bar.* v.> 5\r\n"
                        + "SUB baz v* 6\r\nSUB baz vx 7\r\n")
        #expect(try client.sync() == [
            violation(subscribe: "bar.x", queue: "v.1.2"), violation(subscribe: "bar.x"),
            violation(subscribe: "bar.*", queue: "v.>"), violation(subscribe: "baz", queue: "vx"),
        ])
    }

    @Test func aDenyQueueEntryRefusesOnlyThatQueueAndItsQueueEntriesOverrideAPlainDeny() throws {
        let broker = try queueBroker()
        let client = try broker.login("denier", "pw")
        // `both` is denied plainly, but a queue other than v1 passes (2.9.10 lets the queue
        // entries decide once one matches the subject).
        try client.send("SUB dd 1\r\nSUB dd v1 2\r\nSUB dd v2 3\r\nSUB both 4\r\nSUB both v1 5\r\nSUB both v2 6\r\n"
                        + "SUB x.y v2 7\r\nSUB x.y v3 8\r\n")
        #expect(try client.sync() == [
            violation(subscribe: "dd", queue: "v1"), violation(subscribe: "both"),
            violation(subscribe: "both", queue: "v1"), violation(subscribe: "x.y", queue: "v2"),
        ])
    }

    @Test func allowedQueueSubscriptionsReceiveAndAreShared() throws {
        let broker = try queueBroker()
        let first = try broker.login("mixed", "pw")
        let second = try broker.login("mixed", "pw")
        try first.send("SUB foo v1 1\r\n")
        try second.send("SUB foo v1 1\r\n")
        try first.sync()
        try second.sync()
        let alice = try broker.login("alice", "pw")
        try alice.send("PUB foo 1\r\nx\r\n")
        try alice.sync()
        let got = try first.sync() + second.sync()
        #expect(got == ["MSG foo 1 1", "x"])
    }

    @Test func theQueueSysIsRefusedEvenWithoutPermissions() throws {
        let broker = try queueBroker()
        let alice = try broker.login("alice", "pw")
        try alice.send("SUB foo _sys_ 1\r\nSUB foo sys 2\r\n")
        #expect(try alice.sync() == [violation(subscribe: "foo", queue: "_sys_")])
    }

    @Test func violationsAreLoggedWithTheLinesOf2_9_10() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("perm-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let broker = try queueBroker(logFile: path)
        let client = try broker.login("mixed", "pw")
        try client.send("SUB foo v2 7\r\nSUB nope 8\r\nPUB _GR_.a.b 0\r\n\r\n")
        #expect(try client.sync().count == 3)
        let expected = [
            #"Subscription Violation - User "mixed", Subject "foo", Queue: "v2", SID 7"#,
            #"Subscription Violation - User "mixed", Subject "nope", SID 8"#,
            #"Publish Violation - User "mixed", Subject "_GR_.a.b""#,
        ]
        var lines: [String] = []
        #expect(eventually {
            lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
                .filter { $0.contains("Violation") }.map(String.init)
            return lines.count == 3
        })
        for (line, tail) in zip(lines, expected) {
            #expect(line.contains("[ERR]") && line.hasSuffix(" - " + tail), "\(line)")
        }
    }
}
