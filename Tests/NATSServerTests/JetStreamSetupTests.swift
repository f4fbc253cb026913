// Enabling JetStream: flags, the nats.conf `jetstream` block and `store_dir`, INFO, monitoring, and
// start-up errors, as nats-server 2.9.10 has them.

import Foundation
import NATSConfig
import Testing
@testable import NATSServer

private func configured(_ text: String) throws -> Options {
    var options = Options()
    try options.apply(ConfigParser.parse(text, file: "nats.conf", environment: [:]))
    return options
}

private func configError(_ text: String) -> ConfigError? {
    do {
        _ = try configured(text)
        return nil
    } catch let error as ConfigError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

/// A fresh directory under the system's temporary directory, removed by `cleanup`.
private func scratchDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "js-setup-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite("JetStream setup")
struct JetStreamSetupTests {
    @Test func theJetStreamBlockSetsEveryLimit() throws {
        let o = try configured(
            """
            jetstream {
                store_dir: "/var/lib/nats"
                max_mem: 1G
                max_file_store: "10M"
                domain: hub
                sync_interval: always
            }
            """)
        #expect(o.jetStream)
        #expect(o.storeDirectory == "/var/lib/nats")
        #expect(o.jetStreamMaxMemory == 1_000_000_000)   // unquoted 1G is decimal in nats.conf; "1G" is binary
        #expect(o.jetStreamMaxStore == 10 << 20)
        #expect(o.jetStreamDomain == "hub")
        #expect(o.jetStreamSyncAlways)
    }

    @Test(arguments: [("jetstream: enabled", true), ("jetstream: true", true), ("jetstream: disabled", false),
                      ("jetstream { enabled: false }", false), ("jetstream {}", true)])
    func theShortFormsEnableOrDisable(line: String, enabled: Bool) throws {
        #expect(try configured(line).jetStream == enabled)
    }

    @Test func aTopLevelStoreDirAndSyncIntervalAreRead() throws {
        let o = try configured("store_dir: /data\njetstream { sync_interval: \"10s\" }")
        #expect(o.storeDirectory == "/data")
        #expect(o.jetStreamSyncInterval == .seconds(10))
        #expect(!o.jetStreamSyncAlways)
    }

    @Test func mistakesNameTheLineAs2_9_10Words() throws {
        let duplicate = try #require(configError("store_dir: /a\njetstream {\n  store_dir: /b\n}"))
        #expect(duplicate.message == "Duplicate 'store_dir' configuration")
        #expect(duplicate.location?.line == 3)

        let word = try #require(configError("port: 1\njetstream: maybe"))
        #expect(word.message == "Expected 'enabled' or 'disabled' for string value, got 'maybe'")
        #expect(word.location?.line == 2)

        let unknown = try #require(configError("jetstream {\n  max_streams: 3\n}"))
        #expect(unknown.message == "unknown field \"max_streams\"")
        #expect(unknown.location?.line == 2)

        let size = try #require(configError("jetstream { max_mem: \"10X\" }"))
        #expect(size.message == "max_mem_store sizes defined as strings must end in K, M, G, T")
    }

    @Test func theFlagsEnableJetStreamAndSetTheStore() throws {
        guard case .run(let options) = try ServerCommandLine.parse(["-js", "-sd", "/srv/nats"]) else {
            Issue.record("flags did not give a run action")
            return
        }
        #expect(options.jetStream)
        #expect(options.storeDirectory == "/srv/nats")
        guard case .run(let long) = try ServerCommandLine.parse(["--jetstream", "--store_dir=/x"]) else {
            Issue.record("long flags did not give a run action")
            return
        }
        #expect(long.jetStream && long.storeDirectory == "/x")
        #expect(ServerCommandLine.usage.contains("-js, --jetstream"))
    }

    @Test func theStoreLivesUnderJetstreamOfTheStoreDir() {
        var options = Options()
        options.storeDirectory = "/srv/nats/"
        options.jetStreamMaxMemory = 5
        options.jetStreamMaxStore = 7
        let settings = JetStreamSettings(options).engineOptions
        #expect(settings.storeDirectory == "/srv/nats/jetstream")
        #expect(settings.maxMemory == 5 && settings.maxStore == 7)
        options.jetStreamMaxMemory = nil
        #expect(JetStreamSettings(options).engineOptions.maxMemory > 0)
        #expect(JetStreamSettings.friendlyBytes(512) == "512 B")
        #expect(JetStreamSettings.friendlyBytes(18_957_136_896) == "17.66 GB")
    }

    @Test func infoAdvertisesJetStreamAndItsDomainOnlyWhenEnabled() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let on = try TestBroker { $0.jetStream = true; $0.storeDirectory = directory; $0.jetStreamDomain = "hub" }
        let (json, raw) = try RawClient(port: on.port).readInfo()
        #expect(json["jetstream"] as? Bool == true)
        #expect(json["domain"] as? String == "hub")
        #expect(raw.contains(#""max_payload":1048576,"jetstream":true,"client_id""#))

        let off = try TestBroker()
        let (plain, _) = try RawClient(port: off.port).readInfo()
        #expect(plain["jetstream"] == nil)
        #expect(plain["domain"] == nil)
    }

    @Test func varzAndJszShowTheConfigAndFigures() async throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try TestBroker {
            $0.httpPort = -1
            $0.jetStream = true
            $0.storeDirectory = directory
            $0.jetStreamMaxMemory = 1 << 20
            $0.jetStreamMaxStore = 1 << 30
        }
        let port = try #require(broker.server.monitoringPort)
        let (_, varzBody) = try await httpGet(port: port, path: "/varz")
        let varz = try #require(try JSONSerialization.jsonObject(with: Data(varzBody)) as? [String: Any])
        let block = try #require(varz["jetstream"] as? [String: Any])
        let config = try #require(block["config"] as? [String: Any])
        #expect(config["max_memory"] as? Int == 1 << 20)
        #expect(config["max_storage"] as? Int == 1 << 30)
        #expect(config["store_dir"] as? String == directory + "/jetstream")
        let stats = try #require(block["stats"] as? [String: Any])
        #expect(Array(stats.keys).sorted() == ["accounts", "api", "ha_assets", "memory", "reserved_memory",
                                                "reserved_storage", "storage"])

        let (status, jszBody) = try await httpGet(port: port, path: "/jsz?accounts=1")
        #expect(status == 200)
        let jsz = try #require(try JSONSerialization.jsonObject(with: Data(jszBody)) as? [String: Any])
        #expect(jsz["disabled"] == nil)
        #expect(jsz["streams"] as? Int == 0)
        let accounts = try #require(jsz["account_details"] as? [[String: Any]])
        #expect(accounts.first?["name"] as? String == "$G")

        let (missing, _) = try await httpGet(port: port, path: "/jsz?acc=nobody")
        #expect(missing == 400)
    }

    @Test func jszSaysDisabledWithoutJetStream() async throws {
        let broker = try TestBroker { $0.httpPort = -1 }
        let port = try #require(broker.server.monitoringPort)
        let (_, body) = try await httpGet(port: port, path: "/jsz")
        let jsz = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        #expect(jsz["disabled"] as? Bool == true)
        #expect((jsz["config"] as? [String: Any])?["max_memory"] as? Int == 0)
    }

    @Test func aStoreDirThatIsAFileIsAStartErrorNamingIt() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/not-a-directory"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        var options = Options()
        options.host = "127.0.0.1"
        options.port = 0
        options.noLog = true
        options.jetStream = true
        options.storeDirectory = file
        let server = Server(options: options)
        do {
            try server.start()
            server.shutdown()
            Issue.record("the server started on a store directory that is a file")
        } catch {
            guard case .jetStream(let reason) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(reason.contains(file))
        }
    }
}
