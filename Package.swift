// swift-tools-version:6.0
// microservices-nats: a NATS broker, client and services in Swift, with no package dependencies.
import PackageDescription

let package = Package(
    name: "microservices-nats",
    products: [
        .executable(name: "nats-server", targets: ["nats-server"]),
        .executable(name: "nats", targets: ["nats"]),
        .library(name: "NATSClient", targets: ["NATSClient"]),
        .library(name: "NATSServer", targets: ["NATSServer"]),
        .library(name: "ServiceKit", targets: ["ServiceKit"]),
        .executable(name: "auth-service", targets: ["auth-service"]),
        .executable(name: "notification-service", targets: ["notification-service"]),
        .executable(name: "data-processing-service", targets: ["data-processing-service"]),
        .executable(name: "analytics-service", targets: ["analytics-service"]),
    ],
    dependencies: [],
    targets: [
        // C shim: what Glibc does not export (epoll, eventfd, timerfd, socket options).
        .target(name: "CSystem"),
        // OpenSSL's libcrypto and libssl (Debian: libssl-dev to build, libssl3 to run): ed25519 for
        // nkeys, and TLS.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // nkeys: base32 public keys and seeds with their CRC16, ed25519 signatures through OpenSSL.
        .target(name: "NKeys", dependencies: ["COpenSSL"]),
        // The wire protocol with no I/O: parsers, encoder, subjects, subject trie, headers.
        .target(name: "NATSProtocol"),
        // JSON (value, reader, writer, escaping), RFC 3339 time and calendar arithmetic, without Foundation.
        .target(name: "Formats"),
        // POSIX file calls that retry EINTR and name the failing path (the service store, the JetStream store).
        .target(name: "POSIXFiles"),
        // nats.conf syntax: parsed into a tree whose nodes know their file:line (no server knowledge).
        .target(name: "NATSConfig", dependencies: ["Formats"]),
        // epoll reactor, sockets, timers, outbound buffers flushed with writev.
        .target(name: "EventLoop", dependencies: ["CSystem"]),
        // Small HTTP/1.1 server (broker monitoring, services).
        .target(name: "HTTPServer", dependencies: ["EventLoop", "CSystem", "Formats"]),
        // The broker: connections, routing, auth, limits, monitoring.
        .target(name: "NATSServer", dependencies: ["NATSProtocol", "NATSConfig", "EventLoop", "HTTPServer", "CSystem", "Formats", "JetStream", "NKeys"]),
        // JetStream: a stream's message store (memory and file backends, limits, recovery), the API's errors and JSON.
        .target(name: "JetStream", dependencies: ["NATSProtocol", "Formats", "POSIXFiles", "CSystem"]),
        // The async/await client library.
        .target(name: "NATSClient", dependencies: ["NATSProtocol", "CSystem", "NKeys"]),

        // Shared service runtime: configuration, logging, crypto, durable store, health, metrics, shutdown.
        .target(name: "ServiceKit", dependencies: ["NATSClient", "HTTPServer", "Formats", "POSIXFiles"]),

        // The auth service's logic (users, passwords, tokens, HTTP API, NATS endpoints); its main is thin.
        .target(name: "AuthService", dependencies: ["ServiceKit", "NATSClient", "HTTPServer", "Formats"]),
        // Notifications: user.logged_in -> personalised notification, stored, streamed over SSE.
        .target(name: "NotificationService", dependencies: ["ServiceKit", "NATSClient", "HTTPServer", "Formats"]),
        // Dataset pipelines (data.transform, jobs) on every core; event normalisation for analytics.
        .target(name: "DataProcessingService", dependencies: ["ServiceKit", "NATSClient", "HTTPServer", "Formats"]),
        // Live aggregates over the event streams: sliding windows, HyperLogLog, top-N, latency.
        .target(name: "AnalyticsService", dependencies: ["ServiceKit", "NATSClient", "HTTPServer", "Formats"]),

        // Thin mains.
        .executableTarget(name: "nats-server", dependencies: ["NATSServer"]),
        .executableTarget(name: "nats", dependencies: ["NATSClient"]),
        .executableTarget(name: "auth-service", dependencies: ["AuthService"]),
        .executableTarget(name: "notification-service", dependencies: ["NotificationService"]),
        .executableTarget(name: "data-processing-service", dependencies: ["DataProcessingService"]),
        .executableTarget(name: "analytics-service", dependencies: ["AnalyticsService"]),
        // The writer process of ServiceKit's SIGKILL durability test (not a product).
        .executableTarget(name: "store-torture", dependencies: ["ServiceKit"], path: "Tests/Tools/store-torture"),
        .executableTarget(name: "nats-blast", path: "Tests/Tools/nats-blast"),
        // Append, recovery and read-back rates of the JetStream file store, and its memory per message.
        .executableTarget(name: "jetstream-bench", dependencies: ["JetStream"], path: "Tests/Tools/jetstream-bench"),
        // JetStream publish-with-ack and pull-consume rates over the wire, the same client for both brokers.
        .executableTarget(name: "js-bench", path: "Tests/Tools/js-bench"),
        // The platform under SIGKILLs and restarts while logins and jobs run; checks nothing was lost
        // or duplicated (scripts/chaos runs it; so does a short PlatformTests case).
        .executableTarget(name: "platform-chaos", dependencies: ["NATSClient", "TestSupport"], path: "Tests/Tools/platform-chaos"),

        // Helpers shared by the test targets: child processes (built executables, brokers, services) on
        // free ports, a raw-socket HTTP client, deadline-bounded waits, a seeded random generator.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "NATSProtocolTests", dependencies: ["NATSProtocol", "TestSupport"]),
        .testTarget(name: "JetStreamTests", dependencies: ["JetStream", "Formats", "TestSupport"]),
        .testTarget(name: "NKeysTests", dependencies: ["NKeys"]),
        .testTarget(name: "FormatsTests", dependencies: ["Formats", "TestSupport"]),
        .testTarget(name: "NATSConfigTests", dependencies: ["NATSConfig"], exclude: ["Fixtures"]),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop", "TestSupport"]),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer", "TestSupport"]),
        .testTarget(name: "ServiceKitTests", dependencies: ["ServiceKit", "nats-server", "TestSupport"]),
        .testTarget(name: "AuthServiceTests", dependencies: ["AuthService", "auth-service", "nats-server", "TestSupport"]),
        .testTarget(name: "NotificationServiceTests", dependencies: ["NotificationService", "notification-service", "nats-server", "TestSupport"]),
        .testTarget(name: "DataProcessingServiceTests", dependencies: ["DataProcessingService", "data-processing-service", "nats-server", "TestSupport"]),
        .testTarget(name: "AnalyticsServiceTests", dependencies: ["AnalyticsService", "analytics-service", "nats-server", "TestSupport"]),
        // The platform end to end: the broker and the four services as real processes, driven with curl.
        .testTarget(name: "PlatformTests", dependencies: ["nats-server", "auth-service", "notification-service",
                                                          "data-processing-service", "analytics-service", "nats", "platform-chaos",
                                                          "TestSupport"]),
        .testTarget(name: "NATSServerTests", dependencies: ["NATSServer", "NATSProtocol", "nats-server", "NKeys"]),
        .testTarget(name: "NATSClientTests", dependencies: ["NATSClient", "nats-server", "nats", "TestSupport"], exclude: ["Python"]),
        // Black-box compatibility: the same transcripts against our broker and Debian's nats-server 2.9.10.
        .testTarget(name: "CompatibilityTests", dependencies: ["nats-server", "NKeys"]),
        // SIGKILL during a JetStream publish load, restart on the same store (ours and nats-server 2.9.10 -js).
        .testTarget(name: "JetStreamCrashTests", dependencies: ["nats-server", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
