// `nats bench SUBJECT --js`: publishing with acks (one in flight with --syncpub, else a window of
// --pubbatch) and consuming with a shared pull consumer (--pull) or a push consumer per subscriber,
// with natscli's flag names.

import Foundation
import NATSClient
import Synchronization

extension Bench {
    /// The messages the pull subscribers have taken together.
    final class SharedCount: Sendable {
        let value = Atomic<Int>(0)
    }

    static func jetStream(_ config: BenchConfig, arguments: Arguments, options: NATSClient.Options) async throws(CLIError) {
        guard config.publishers > 0 || config.subscribers > 0 else { throw .usage("nats bench: need --pub or --sub") }
        let streamName = arguments.value("stream") ?? "benchstream"
        let storage = try JetStreamCommands.choice(arguments, "storage", ["file": StorageType.file, "memory": .memory, "mem": .memory],
                                                   default: .memory)
        let window = try arguments.int("pubbatch", default: 100, range: 1...100_000)
        let pullBatch = try arguments.int("pullbatch", default: 100, range: 1...100_000)
        let synchronous = arguments.switches.contains("syncpub")
        let pull = arguments.switches.contains("pull")
        let payload = [UInt8](repeating: 0x61, count: config.size)

        let admin = try await connect(options, name: "nats-bench-admin")
        let js: JetStreamContext
        do {
            js = try admin.jetStream(timeout: .seconds(30))
        } catch {
            throw .failed("nats bench: \(error)")
        }
        if config.publishers > 0 {
            // A fresh stream per run, as natscli does unless told to reuse one.
            _ = try? await js.deleteStream(streamName)
            var stream = StreamConfig(name: streamName, subjects: [config.subject])
            stream.storage = storage
            _ = try await JetStreamCommands.run("creating stream \(streamName)") { () async throws(JetStreamError) in
                try await js.addStream(stream)
            }
        }
        if pull && config.subscribers > 0 {
            var consumer = ConsumerConfig(durableName: "natscli-bench")
            consumer.ackPolicy = .explicit
            consumer.maxAckPending = max(pullBatch * config.subscribers * 2, 1000)
            _ = try await JetStreamCommands.run("creating consumer") { () async throws(JetStreamError) in
                try await js.addConsumer(streamName, config: consumer)
            }
        }
        print("\(Format.clock()) Starting JetStream benchmark [subject=\(config.subject), msgs=\(Format.grouped(config.messages)), "
              + "msgsize=\(config.size) B, pubs=\(config.publishers), subs=\(config.subscribers), stream=\(streamName), "
              + "storage=\(storage.rawValue), syncpub=\(synchronous), pubbatch=\(window), pull=\(pull), pullbatch=\(pullBatch)]")

        var subClients: [NATSClient] = []
        for index in 0..<config.subscribers { subClients.append(try await connect(options, name: "nats-bench-sub-\(index)")) }
        let expected = config.messages
        let shared = SharedCount()
        // The first pull subscriber to stop (it took the last message, or failed) ends the others.
        let (done, doneSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        var subTasks: [Task<BenchSample, any Error>] = []
        for client in subClients {
            let context = try JetStreamCommands.contextOf(client)
            if pull {
                let consumer = try await JetStreamCommands.run("consumer") { () async throws(JetStreamError) in
                    try context.pullConsumer(stream: streamName, name: "natscli-bench")
                }
                let messages = try await JetStreamCommands.run("consumer") { () async throws(JetStreamError) in
                    try consumer.messages(batch: pullBatch)
                }
                subTasks.append(Task {
                    var first: ContinuousClock.Instant?
                    var count = 0
                    var bytes = 0
                    // Also when this subscriber fails, so the wait below ends.
                    defer { doneSignal.yield() }
                    do {
                        for try await message in messages {
                            if first == nil { first = .now }
                            try await message.ack()
                            count += 1
                            bytes += message.payload.count
                            if shared.value.add(1, ordering: .relaxed).newValue >= expected { break }
                        }
                    } catch is CancellationError {
                        // Another subscriber took the last message.
                    }
                    return BenchSample(messages: count, bytes: bytes, start: first ?? .now, end: .now)
                })
            } else {
                var consumer = ConsumerConfig()
                consumer.ackPolicy = .none
                consumer.flowControl = true
                consumer.idleHeartbeat = .seconds(5)
                consumer.deliverPolicy = config.publishers > 0 ? .new : .all
                let subscription = try await JetStreamCommands.run("creating push consumer") { () async throws(JetStreamError) in
                    try await context.pushSubscribe(stream: streamName, config: consumer)
                }
                subscription.subscription.pendingLimits = .init(messages: 0, bytes: 0)
                subTasks.append(Task {
                    var first: ContinuousClock.Instant?
                    var count = 0
                    var bytes = 0
                    for try await message in subscription {
                        if first == nil { first = .now }
                        count += 1
                        bytes += message.payload.count
                        if count >= expected { break }
                    }
                    return BenchSample(messages: count, bytes: bytes, start: first ?? .now, end: .now)
                })
            }
        }

        var pubClients: [NATSClient] = []
        for index in 0..<config.publishers { pubClients.append(try await connect(options, name: "nats-bench-pub-\(index)")) }
        let share = config.publishers > 0 ? config.messages / config.publishers : 0
        var pubTasks: [Task<BenchSample, any Error>] = []
        for (index, client) in pubClients.enumerated() {
            let count = share + (index < config.messages - share * config.publishers ? 1 : 0)
            let context = try JetStreamCommands.contextOf(client)
            let subject = config.subject
            pubTasks.append(Task {
                let start = ContinuousClock.now
                if synchronous {
                    for _ in 0..<count { _ = try await context.publish(subject, payload: payload) }
                } else {
                    let publisher = try await context.asyncPublisher(maxPending: window)
                    for _ in 0..<count { _ = try await publisher.publish(subject, payload: payload) }
                    let failed = await publisher.waitForAll()
                    if failed > 0 { throw CLIError.failed("nats bench: \(failed) publishes got no ack") }
                }
                return BenchSample(messages: count, bytes: count * payload.count, start: start, end: .now)
            })
        }
        var pubSamples: [BenchSample] = []
        for task in pubTasks {
            do {
                pubSamples.append(try await task.value)
            } catch {
                throw .failed("nats bench: publishing failed: \(error)")
            }
        }
        if pull && !subTasks.isEmpty {
            for await _ in done { break }
            for task in subTasks { task.cancel() }
        }
        doneSignal.finish()
        var subSamples: [BenchSample] = []
        for task in subTasks {
            do {
                subSamples.append(try await task.value)
            } catch {
                throw .failed("nats bench: consuming failed: \(error)")
            }
        }
        print("")
        if !pubSamples.isEmpty {
            report(label: synchronous ? "JetStream sync publish stats" : "JetStream async publish stats (window \(window))",
                   samples: pubSamples, indent: " ")
        }
        if !subSamples.isEmpty {
            report(label: pull ? "JetStream pull consume stats (batch \(pullBatch))" : "JetStream push consume stats",
                   samples: subSamples, indent: " ")
        }
        for client in pubClients + subClients { await client.close() }
        await admin.close()
    }
}

extension JetStreamCommands {
    /// - Throws: ``CLIError/failed(_:)``.
    static func contextOf(_ client: NATSClient) throws(CLIError) -> JetStreamContext {
        do {
            return try client.jetStream(timeout: .seconds(30))
        } catch {
            throw .failed("nats bench: \(error)")
        }
    }
}
