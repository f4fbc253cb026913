// Accounts: the same accounts configuration played against our broker and nats-server 2.9.10.

private let accountsConfig = BrokerConfig(configLines: [
    "accounts {",
    "  A {",
    "    users [{user: a, password: a}]",
    #"    exports [{stream: "s.>"}, {service: "req.>"}]"#,
    "  }",
    "  B {",
    "    users [{user: b, password: b}]",
    "    imports [",
    #"      {stream: {account: A, subject: "s.>"}, prefix: "p"}"#,
    #"      {service: {account: A, subject: "req.x"}, to: "local.x"}"#,
    "    ]",
    "  }",
    "  C {",
    "    users [{user: c, password: c}]",
    #"    imports [{stream: {account: A, subject: "s.>"}, to: "m.>"}]"#,
    "  }",
    "}",
])

private var jetStreamAccounts: BrokerConfig {
    var config = BrokerConfig(configLines: [
        "accounts {",
        "  A { users [{user: a, password: a}] }",
        "  J { users [{user: j, password: j}], jetstream: enabled }",
        "}",
    ])
    config.jetstream = true
    return config
}

private let chainedStreamConfig = BrokerConfig(configLines: [
    "accounts {",
    "  A { users [{user: a, password: a}], exports [{stream: foo, accounts: [B]}] }",
    "  B { users [{user: b, password: b}], imports [{stream: {account: A, subject: foo}}], exports [{stream: foo}] }",
    "  C { users [{user: c, password: c}], imports [{stream: {account: B, subject: foo}}] }",
    "}",
])

private var jetStreamAPIImport: BrokerConfig {
    var config = BrokerConfig(configLines: [
        "accounts {",
        #"  A { jetstream: enabled, users [{user: a, password: a}], exports [{service: "$JS.API.>"}] }"#,
        #"  B { users [{user: b, password: b}], imports [{service: {account: A, subject: "$JS.API.>"}}] }"#,
        "}",
    ])
    config.jetstream = true
    return config
}

private func login(_ user: String) -> String {
    #"CONNECT {"verbose":false,"user":"\#(user)","pass":"\#(user)","headers":true,"no_responders":true}"# + "\r\n"
}

extension Scenarios {
    static let accounts: [Scenario] = [
        Scenario(name: "accounts: clients of two accounts never see each other's messages",
                 config: accountsConfig,
                 steps: [.exchange(login("a") + "SUB > 1\r\n", on: 0), .exchange(login("c") + "SUB > 1\r\n", on: 1),
                         .exchange("PUB x.y 2\r\nfa\r\n", on: 0), .exchange("PUB x.y 2\r\nfc\r\n", on: 1)],
                 expect: [.open("PONG\r\nMSG x.y 1 2\r\nfa\r\nPONG\r\n"), .open("PONG\r\nMSG x.y 1 2\r\nfc\r\nPONG\r\n")]),
        Scenario(name: "accounts: a stream import delivers with its prefix, or mapped by its to",
                 config: accountsConfig,
                 steps: [.exchange(login("b") + "SUB p.> 1\r\nSUB s.> 2\r\n", on: 1),
                         .exchange(login("c") + "SUB m.> 1\r\nSUB s.> 2\r\n", on: 2),
                         .exchange(login("a") + "PUB s.foo.bar 2\r\nhi\r\nPUB other 1\r\nx\r\n", on: 0),
                         .exchange("", on: 1), .exchange("", on: 2)],
                 expect: [.open("PONG\r\n"), .open("PONG\r\nMSG p.s.foo.bar 1 2\r\nhi\r\nPONG\r\n"),
                          .open("PONG\r\nMSG m.foo.bar 1 2\r\nhi\r\nPONG\r\n")]),
        Scenario(name: "accounts: a stream import reaches the importing account's subscribers, never its exports",
                 config: chainedStreamConfig,
                 steps: [.exchange(login("b") + "SUB foo 1\r\n", on: 1), .exchange(login("c") + "SUB foo 1\r\n", on: 2),
                         .exchange(login("a") + "PUB foo 2\r\nfa\r\n", on: 0),
                         .exchange("", on: 1), .exchange("", on: 2)],
                 expect: [.open("PONG\r\n"), .open("PONG\r\nMSG foo 1 2\r\nfa\r\nPONG\r\n"), .open("PONG\r\nPONG\r\n")]),
        Scenario(name: "accounts: a second CONNECT as a user of another account publishes in that account",
                 config: accountsConfig,
                 steps: [.exchange(login("a") + "SUB w 1\r\n", on: 0), .exchange(login("c") + "SUB w 1\r\n", on: 1),
                         .exchange(login("a") + "SUB x 1\r\n", on: 2),
                         .exchange(login("c") + "PUB w 2\r\nhi\r\n", on: 2),
                         .exchange("", on: 0), .exchange("", on: 1)],
                 expect: [.open("PONG\r\nPONG\r\n"), .open("PONG\r\nMSG w 1 2\r\nhi\r\nPONG\r\n"),
                          .open("PONG\r\nPONG\r\n")]),
        Scenario(name: "accounts: a request on a service import nobody answers gets no 503",
                 config: accountsConfig,
                 steps: [.exchange(login("b") + "SUB _INBOX.> 1\r\nPUB local.x _INBOX.r1 3\r\nreq\r\n"
                                   + "PUB nothing _INBOX.r2 1\r\nx\r\n")],
                 expect: [.open("HMSG _INBOX.r2 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")]),
        Scenario(name: "accounts: an account without a jetstream block gets JetStream not enabled for account",
                 config: jetStreamAccounts,
                 steps: [.request(login("a") + "SUB _INBOX.> 1\r\nPUB $JS.API.INFO _INBOX.x 0\r\n\r\n"
                                  + "PUB $JS.API.STREAM.NAMES _INBOX.z 0\r\n\r\n", replies: 2)],
                 expect: [.open(#"MSG _INBOX.x 1 145\#r\#n{"type":"io.nats.jetstream.api.v1.account_info_response","error":{"code":503,"err_code":10039,"description":"JetStream not enabled for account"}}\#r\#n"#
                                + #"MSG _INBOX.z 1 191\#r\#n{"type":"io.nats.jetstream.api.v1.stream_names_response","error":{"code":503,"err_code":10039,"description":"JetStream not enabled for account"},"total":0,"offset":0,"limit":0,"streams":null}\#r\#n"#)]),
        Scenario(name: "accounts: an account importing the JetStream API gets only the exporter's answer",
                 config: jetStreamAPIImport,
                 steps: [.request(login("b") + "SUB _INBOX.> 1\r\nPUB $JS.API.STREAM.NAMES _INBOX.r 0\r\n\r\n")],
                 expect: [.open(#"PONG\#r\#nMSG _INBOX.r 1 106\#r\#n{"type":"io.nats.jetstream.api.v1.stream_names_response","total":0,"offset":0,"limit":1024,"streams":null}\#r\#n"#)]),
    ]
}
