import Foundation
import TestSupport
import Testing

/// docker-compose.yml, as docker-compose 1.29 resolves it (`docker-compose config`; no Docker
/// engine is needed for that), and the Dockerfiles it builds.
@Suite struct ComposeTests {
    static let services = ["nats"] + Contract.services
    /// The variable nats-server/permissions.conf takes each identity's password from.
    static let passwordVariables = [
        "admin": "NATS_ADMIN_PASSWORD", "auth-service": "AUTH_SERVICE_PASSWORD",
        "notification-service": "NOTIFICATION_SERVICE_PASSWORD",
        "data-processing-service": "DATA_PROCESSING_SERVICE_PASSWORD", "analytics-service": "ANALYTICS_SERVICE_PASSWORD",
    ]

    /// `docker-compose -f <file> ... config` (docker-compose.yml unless `files` says otherwise) with
    /// `environment`; nil when docker-compose is absent (a failure when REQUIRE_PEERS=1).
    static func config(_ environment: [String: String] = [:], files: [String] = ["docker-compose.yml"]) async throws -> YAMLNode? {
        guard let compose = findExecutable("docker-compose") else {
            if peersRequired { Issue.record("REQUIRE_PEERS=1 but docker-compose is not installed (.ci/run installs Debian's)") }
            return nil
        }
        var env = ProcessInfo.processInfo.environment
        for key in ["JWT_SECRET", "LOG_LEVEL", "SWIFT_IMAGE", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"] + Array(passwordVariables.values) {
            env[key] = nil
        }
        for (key, value) in environment { env[key] = value }
        let result = try await runCommand(compose, files.flatMap { ["-f", $0] } + ["config"], environment: env,
                                          directory: repositoryRoot, timeout: 60)
        guard result.status == 0 else {
            throw TestFailure("docker-compose config exited with \(result.status):\n\(result.error)\(result.output)")
        }
        return try MiniYAML.parse(result.output)
    }

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOfFile: repositoryRoot + "/" + relativePath, encoding: .utf8)
    }

    @Test func composeConfigIsValidAndDeclaresTheFiveServices() async throws {
        guard let config = try await Self.config() else { return }
        let services = try #require(config["services"])
        #expect(Set(services.keys) == Set(Self.services))
        for name in Self.services {
            let service = try #require(services[name], "\(name) missing")
            #expect(service["restart"]?.string == "unless-stopped", "\(name): restart policy")
            // Published ports as in the platform contract; the broker's on the loopback only.
            let ports = (service["ports"]?.items ?? []).map(Self.publishedPort)
            let published = ports.compactMap(\.port)
            #expect(published.sorted() == Contract.defaultPorts[name == "nats" ? "nats" : name], "\(name): ports \(ports)")
            if name == "nats" {
                #expect(ports.allSatisfy { $0.hostIP == "127.0.0.1" }, "the broker's ports must be bound to 127.0.0.1: \(ports)")
            }
        }
    }

    /// A published port as docker-compose 1.29 writes it: `{published, target}` without a host
    /// address, `"IP:PUBLISHED:TARGET/tcp"` with one.
    static func publishedPort(_ node: YAMLNode) -> (hostIP: String?, port: Int?) {
        if let text = node.string {
            let parts = text.split(separator: "/").first.map { $0.split(separator: ":").map(String.init) } ?? []
            return parts.count == 3 ? (parts[0], Int(parts[1])) : (nil, parts.count == 2 ? Int(parts[0]) : nil)
        }
        return (nil, node["published"]?.string.flatMap(Int.init))
    }

    @Test func everyServiceHasAHealthcheckOnHealthzAndStartsAfterItsDependenciesAreHealthy() async throws {
        guard let config = try await Self.config(), let services = config["services"] else { return }
        for name in Self.services {
            let test = services[name]?["healthcheck"]?["test"]?.items.compactMap(\.string) ?? []
            #expect(test.first == "CMD" || test.first == "CMD-SHELL", "\(name): healthcheck \(test)")
            if name == "nats" {
                #expect(test.contains { $0.hasSuffix(":8222/healthz") }, "nats healthcheck must probe the monitoring /healthz: \(test)")
            } else {
                // The services' image probes /healthz on its HTTP port (Dockerfile's healthcheck script).
                #expect(test == ["CMD", "healthcheck"], "\(name): healthcheck \(test)")
            }
            #expect(services[name]?["healthcheck"]?["interval"]?.string != nil, "\(name): healthcheck interval")
        }
        func conditions(_ name: String) -> [String: String] {
            var out: [String: String] = [:]
            for key in services[name]?["depends_on"]?.keys ?? [] { out[key] = services[name]?["depends_on"]?[key]?["condition"]?.string }
            return out
        }
        #expect(conditions("nats").isEmpty)
        #expect(conditions("auth-service") == ["nats": "service_healthy"])
        #expect(conditions("notification-service") == ["nats": "service_healthy", "auth-service": "service_healthy"])
        #expect(conditions("data-processing-service") == ["nats": "service_healthy"])
        #expect(conditions("analytics-service") == ["nats": "service_healthy"])
    }

    @Test func servicesAreBuiltFromOneDockerfileWithTheirNameAsBuildArgument() async throws {
        guard let config = try await Self.config(), let services = config["services"] else { return }
        for name in Contract.services {
            let build = try #require(services[name]?["build"], "\(name): no build section")
            #expect(build["context"]?.string == repositoryRoot, "\(name): build context")
            #expect(build["dockerfile"]?.string == "Dockerfile", "\(name): dockerfile")
            #expect(build["args"]?["SERVICE"]?.string == name, "\(name): SERVICE build argument")
            #expect(build["args"]?["SWIFT_IMAGE"]?.string?.hasPrefix("swift:6.") == true, "\(name): SWIFT_IMAGE")
        }
        let nats = try #require(services["nats"])
        #expect(nats["build"]?["dockerfile"]?.string == "nats-server/Dockerfile")
        #expect(nats["build"]?["args"]?["SWIFT_IMAGE"] == services["auth-service"]?["build"]?["args"]?["SWIFT_IMAGE"])
        // The broker runs with the repository's nats.conf and the permission matrix it includes, mounted read-only.
        let mounts = nats["volumes"]?.items.compactMap(\.string) ?? []
        #expect(mounts.contains(repositoryRoot + "/nats-server/nats.conf:/etc/nats/nats.conf:ro"))
        #expect(mounts.contains(repositoryRoot + "/nats-server/permissions.conf:/etc/nats/permissions.conf:ro"))
        #expect(try Self.text("nats-server/nats.conf").contains("include ./permissions.conf"))
        #expect(nats["command"]?.items.compactMap(\.string) == ["-c", "/etc/nats/nats.conf"])
        // JetStream's store (nats.conf's store_dir /data) is a named volume of its own, so streams
        // and consumers outlive the container.
        let natsConf = try Self.text("nats-server/nats.conf")
        #expect(natsConf.contains("jetstream {") && natsConf.contains("store_dir: \"/data\""))
        let brokerData = nats["volumes"]?.items.compactMap(\.string).filter { $0.hasSuffix(":/data") || $0.hasSuffix(":/data:rw") } ?? []
        #expect(brokerData.count == 1 && brokerData.first?.hasPrefix("/") == false, "the broker's /data: \(brokerData)")
    }

    @Test func servicesGetTheirSettingsFromTheEnvironmentAndKeepDataInTheirOwnVolume() async throws {
        guard let config = try await Self.config(), let services = config["services"] else { return }
        let broker = services["nats"]?["environment"]
        var volumes: Set<String> = []
        for name in Contract.services {
            let environment = try #require(services[name]?["environment"], "\(name): no environment")
            let url = try #require(environment["NATS_URL"]?.string)
            #expect(url == "nats://nats:4222", "\(name): NATS_URL \(url) (credentials go in NATS_USER / NATS_PASSWORD)")
            // Its own NATS user, with the password the broker has for that user.
            #expect(environment["NATS_USER"]?.string == name, "\(name): NATS_USER")
            let variable = try #require(Self.passwordVariables[name])
            if name == "auth-service" {
                // No default: the broker's entrypoint writes it (given or generated) into a volume
                // that only the broker and auth-service mount.
                #expect(environment["NATS_PASSWORD"] == nil && broker?[variable]?.string == "", "\(name): a default password")
                #expect(environment["NATS_PASSWORD_FILE"]?.string == "/run/nats-credentials/password")
                let mounts = services[name]?["volumes"]?.items.compactMap(\.string) ?? []
                #expect(mounts.contains("nats-credentials-auth-service:/run/nats-credentials:ro"), "\(name): \(mounts)")
                #expect(services["nats"]?["volumes"]?.items.compactMap(\.string)
                    .contains { $0.hasPrefix("nats-credentials-auth-service:/credentials/auth-service") } == true)
            } else {
                let password = environment["NATS_PASSWORD"]?.string
                #expect(password?.isEmpty == false && password == broker?[variable]?.string, "\(name): NATS_PASSWORD is not the broker's \(variable)")
            }
            #expect(environment["DATA_DIR"]?.string == "/data", "\(name): DATA_DIR")
            #expect((environment["JWT_SECRET"]?.string?.utf8.count ?? 0) >= 16, "\(name): JWT_SECRET default")
            #expect(environment["HTTP_PORT"]?.string.flatMap(Int.init) == Contract.defaultPorts[name]?.first, "\(name): HTTP_PORT")
            let mounts = services[name]?["volumes"]?.items.compactMap(\.string) ?? []
            let data = mounts.filter { $0.hasSuffix(":/data") || $0.hasSuffix(":/data:rw") }
            #expect(data.count == 1, "\(name): one volume at /data, got \(mounts)")
            if let volume = data.first?.split(separator: ":").first.map(String.init) {
                #expect(!volume.hasPrefix("/"), "\(name): /data must be a named volume, not a bind mount (\(volume))")
                volumes.insert(volume)
            }
        }
        #expect(volumes.count == Contract.services.count, "each service has its own volume: \(volumes)")
        let brokerVolume = services["nats"]?["volumes"]?.items.compactMap(\.string).first { $0.hasSuffix(":/data") || $0.hasSuffix(":/data:rw") }?
            .split(separator: ":").first.map(String.init)
        #expect(brokerVolume.map { !volumes.contains($0) } == true, "the broker's store shares a service's volume")
        #expect(Set(config["volumes"]?.keys ?? []) == volumes.union(brokerVolume.map { [$0] } ?? []).union(["nats-credentials-auth-service"]))
        // admin's password has no default either: generated into the broker's volume when unset.
        #expect(broker?["NATS_ADMIN_PASSWORD"]?.string == "")
        #expect(services["nats"]?["entrypoint"]?.items.compactMap(\.string) == ["/bin/sh", "/etc/nats/compose-credentials.sh"])

        // The development JWT secret gives way to the caller's.
        guard let overridden = try await Self.config(["JWT_SECRET": "production-secret-0123456789"]) else { return }
        for name in Contract.services {
            #expect(overridden["services"]?[name]?["environment"]?["JWT_SECRET"]?.string == "production-secret-0123456789")
        }
        #expect(try Self.text("docker-compose.yml").contains("JWT_SECRET: ${JWT_SECRET:-"))

        // Every NATS password, the admin's included, reaches the broker, each service its own, and
        // the caller's value wins over the development default.
        let brokerVariables = Set(broker?.keys ?? [])
        #expect(brokerVariables.isSuperset(of: Self.passwordVariables.values), "the broker's environment: \(brokerVariables)")
        let chosen = Dictionary(uniqueKeysWithValues: Self.passwordVariables.values.map { ($0, "chosen-\($0.lowercased())") })
        guard let rotated = try await Self.config(chosen) else { return }
        for (variable, value) in chosen { #expect(rotated["services"]?["nats"]?["environment"]?[variable]?.string == value) }
        for name in Contract.services where name != "auth-service" {
            #expect(rotated["services"]?[name]?["environment"]?["NATS_PASSWORD"]?.string == chosen[Self.passwordVariables[name] ?? ""])
        }
    }

    @Test func dockerfilesAreMultiStageStaticallyLinkedAndRunAsNonRootUsers() throws {
        for (path, user) in [("Dockerfile", "app"), ("nats-server/Dockerfile", "nats")] {
            let text = try Self.text(path)
            let instructions = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.hasPrefix("#") }
            let stages = instructions.filter { $0.hasPrefix("FROM ") }
            #expect(stages.count == 2, "\(path): a build and a runtime stage, got \(stages)")
            #expect(stages.first?.contains(" AS build") == true, "\(path): first stage is the build")
            #expect(text.contains("ARG SWIFT_IMAGE=swift:6."), "\(path): Swift 6 toolchain image")
            #expect(text.contains("--static-swift-stdlib"), "\(path): static Swift runtime")
            #expect(text.contains("COPY --from=build"), "\(path): runtime copies from the build stage")
            // The last USER is the one the container runs as: named, never root.
            let lastUser = instructions.last { $0.hasPrefix("USER ") }.map { String($0.dropFirst(5)) }
            #expect(lastUser == user, "\(path): USER \(lastUser ?? "(none)")")
            #expect(lastUser != "root" && lastUser != "0")
            #expect(text.contains("useradd --system"), "\(path): creates its user")
            // What the health check needs is installed in the runtime image.
            #expect(text.contains("apt-get install -y --no-install-recommends curl"), "\(path): curl for the health check")
            #expect(instructions.contains { $0.hasPrefix("HEALTHCHECK ") }, "\(path): HEALTHCHECK")
        }
        let services = try Self.text("Dockerfile")
        #expect(services.contains("ARG SERVICE"))
        #expect(services.contains("debian:bookworm-slim"))
        for name in Contract.services { #expect(services.contains("\(name))"), "Dockerfile accepts SERVICE=\(name)") }
        let ignore = try Self.text(".dockerignore").split(separator: "\n").map(String.init)
        #expect(ignore.contains(".build") && ignore.contains(".git") && ignore.contains("/data"))
    }

    /// The test-only override scripts/compose-check runs with: every service of docker-compose.yml
    /// (a new one too) on the host network, built on it, and reaching the broker on the loopback.
    @Test func theComposeCheckOverridePutsEveryServiceOnTheHostNetwork() async throws {
        guard let config = try await Self.config(files: ["docker-compose.yml", "scripts/compose-check.host-network.yml"]),
              let services = config["services"] else { return }
        #expect(Set(services.keys) == Set(Self.services), "the override adds no service and misses none")
        for name in Self.services {
            #expect(services[name]?["network_mode"]?.string == "host", "\(name): network_mode")
            #expect(services[name]?["build"]?["network"]?.string == "host", "\(name): build network")
            if name != "nats" {
                #expect(services[name]?["environment"]?["NATS_URL"]?.string == "nats://127.0.0.1:4222", "\(name): NATS_URL on the loopback")
                #expect(services[name]?["environment"]?["NATS_USER"]?.string == name, "\(name): its own NATS user survives the override")
            }
        }
    }

    @Test func dockerfilesBuildOfflineShareTheRuntimeLayersAndStripTheBinary() throws {
        for path in ["Dockerfile", "nats-server/Dockerfile"] {
            let text = try Self.text(path)
            // A syntax directive makes BuildKit fetch its frontend image from a registry.
            #expect(!text.contains("# syntax="), "\(path): syntax directive")
            #expect(text.contains("strip --strip-all"), "\(path): the installed binary is stripped")
        }
        // Up to the COPY of the binary, the runtime stage must not depend on SERVICE, or its package
        // layer is built once per service instead of once.
        let services = try Self.text("Dockerfile")
        let runtime = try #require(services.components(separatedBy: "\nFROM ${RUNTIME_IMAGE}\n").dropFirst().first)
        let beforeCopy = try #require(runtime.components(separatedBy: "COPY --from=build").first)
        #expect(!beforeCopy.contains("SERVICE"), "runtime stage before COPY: \(beforeCopy)")
        // The build stages are the same up to the compilation of every product, so the five images
        // share one compilation through the build cache.
        func buildUpToCompilation(_ text: String) -> [String] {
            let instructions = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            let stage = instructions.drop { !$0.hasPrefix("FROM ${SWIFT_IMAGE} AS build") }
            guard let end = stage.firstIndex(where: { $0.hasPrefix("RUN swift build") }) else { return [] }
            return Array(stage[...end])
        }
        let shared = buildUpToCompilation(services)
        #expect(shared.last == "RUN swift build -c release --static-swift-stdlib", "\(shared)")
        #expect(shared == buildUpToCompilation(try Self.text("nats-server/Dockerfile")))
    }

    @Test func miniYAMLReadsWhatComposePrints() throws {
        let text = """
        services:
          a:
            command:
            - -c
            - '8081'
            ports:
            - published: 4222
              target: 4222
            empty: {}
            quoted: "x: \\"y\\""
            long: one two
              three
        volumes:
          data: {}

        """
        let doc = try MiniYAML.parse(text)
        #expect(doc["services"]?["a"]?["command"]?.items.compactMap(\.string) == ["-c", "8081"])
        #expect(doc["services"]?["a"]?["ports"]?.items.first?["target"]?.string == "4222")
        #expect(doc["services"]?["a"]?["empty"] == .mapping([]))
        #expect(doc["services"]?["a"]?["quoted"]?.string == #"x: "y""#)
        #expect(doc["services"]?["a"]?["long"]?.string == "one two three")
        #expect(doc["volumes"]?.keys == ["data"])
        #expect(throws: YAMLError.self) { try MiniYAML.parse("a: &anchor b") }
        #expect(throws: YAMLError.self) { try MiniYAML.parse("a:\n  b: 1\n c: 2") }
    }
}
