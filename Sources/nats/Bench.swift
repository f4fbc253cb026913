// `nats bench`: publishers, subscribers and request-reply over separate connections, reported
// like the Go `nats bench` (msgs/sec, MB/sec, per-client lines, min/avg/max/stddev) plus latency
// percentiles for request-reply.

import Foundation
import NATSClient
import Synchronization

struct BenchConfig {
    var subject: String
    var publishers: Int
    var subscribers: Int
    var messages: Int
    var size: Int
    var request: Bool
}

/// One client's measured window.
struct BenchSample {
    var messages: Int
    var bytes: Int
    var start: ContinuousClock.Instant
    var end: ContinuousClock.Instant

    var seconds: Double {
        let (s, atto) = (end - start).components
        return max(Double(s) + Double(atto) / 1e18, 1e-9)
    }
    var rate: Double { Double(messages) / seconds }
    var throughput: Double { Double(bytes) / seconds / 1024 / 1024 }
}

enum Bench {
    /// `nats bench SUBJECT --pub N --sub M --msgs X --size S [--request]`
    static func run(_ arguments: Arguments) async throws(CLIError) {
        let subject = try Commands.subjectArgument(arguments, "bench")
        let config = BenchConfig(
            subject: subject,
            publishers: try arguments.int("pub", default: 1, range: 0...1024),
            subscribers: try arguments.int("sub", default: 0, range: 0...1024),
            messages: try arguments.int("msgs", default: 100_000, range: 1...1_000_000_000),
            size: try arguments.int("size", default: 128, range: 0...64 * 1024 * 1024),
            request: arguments.switches.contains("request"))
        let options = try Commands.options(arguments)
        if arguments.switches.contains("js") {
            try await jetStream(config, arguments: arguments, options: options)
        } else if config.request {
            try await requestReply(config, options: options)
        } else {
            try await pubSub(config, options: options)
        }
    }

    static func connect(_ options: NATSClient.Options, name: String) async throws(CLIError) -> NATSClient {
        var options = options
        options.name = name
        do {
            return try await NATSClient.connect(options)
        } catch {
            throw .failed("nats bench: cannot connect: \(error)")
        }
    }

    static func pubSub(_ config: BenchConfig, options: NATSClient.Options) async throws(CLIError) {
        guard config.publishers > 0 || config.subscribers > 0 else { throw .usage("nats bench: need --pub or --sub") }
        let payload = [UInt8](repeating: 0x61, count: config.size)
        var subscribers: [(NATSClient, Subscription)] = []
        for index in 0..<config.subscribers {
            let client = try await connect(options, name: "nats-bench-sub-\(index)")
            let sub = try await Commands.run("subscribe") { try await client.subscribe(config.subject) }
            sub.pendingLimits = .init(messages: 0, bytes: 0)  // the benchmark counts everything
            try await Commands.run("flush") { try await client.flush() }
            subscribers.append((client, sub))
        }
        var publishers: [NATSClient] = []
        for index in 0..<config.publishers {
            publishers.append(try await connect(options, name: "nats-bench-pub-\(index)"))
        }
        print("\(Format.clock()) Starting Core NATS pub/sub benchmark [subject=\(config.subject), multisubject=false, "
              + "multisubjectmax=0, msgs=\(Format.grouped(config.messages)), msgsize=\(config.size) B, "
              + "pubs=\(config.publishers), subs=\(config.subscribers), pubsleep=0s, subsleep=0s]")
        // Subscribers wait for --msgs messages (from our publishers, or from others with --pub 0).
        let expected = config.messages
        let subTasks = subscribers.map { pair in
            Task { () -> BenchSample? in
                var iterator = pair.1.makeAsyncIterator()
                var count = 0
                var first: ContinuousClock.Instant?
                var bytes = 0
                while count < expected {
                    guard let message = try? await iterator.next() else { return nil }
                    if first == nil { first = .now }
                    count += 1
                    bytes += message.payload.count
                }
                guard let first else { return nil }
                return BenchSample(messages: count, bytes: bytes, start: first, end: .now)
            }
        }
        var pubTasks: [Task<BenchSample, any Error>] = []
        let share = config.publishers > 0 ? config.messages / config.publishers : 0
        for (index, client) in publishers.enumerated() {
            let count = share + (index < config.messages - share * config.publishers ? 1 : 0)
            pubTasks.append(Task {
                let start = ContinuousClock.now
                for _ in 0..<count { try await client.publish(payload, subject: config.subject) }
                try await client.flush(timeout: .seconds(120))
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
        var subSamples: [BenchSample] = []
        for task in subTasks {
            if let sample = await task.value { subSamples.append(sample) }
        }
        if subSamples.count < subTasks.count {
            throw .failed("nats bench: a subscriber did not receive all \(expected) messages")
        }
        print("")
        if !pubSamples.isEmpty && !subSamples.isEmpty {
            report(label: "NATS Pub/Sub stats", samples: pubSamples + subSamples, indent: "", perClient: false)
            report(label: " Pub stats", samples: pubSamples, indent: " ")
            report(label: " Sub stats", samples: subSamples, indent: " ")
            if let start = pubSamples.map(\.start).min(), let end = subSamples.map(\.end).max() {
                let window = BenchSample(messages: subSamples.reduce(0) { $0 + $1.messages },
                                         bytes: subSamples.reduce(0) { $0 + $1.bytes }, start: start, end: end)
                print(" End-to-end (first publish to last message received): "
                      + "\(Format.grouped(Int(window.rate))) msgs/sec ~ \(Format.fixed(window.throughput)) MB/sec")
            }
        } else if !pubSamples.isEmpty {
            report(label: "Pub stats", samples: pubSamples, indent: "")
        } else {
            report(label: "Sub stats", samples: subSamples, indent: "")
        }
        for client in publishers { await client.close() }
        for (client, _) in subscribers { await client.close() }
    }

    static func requestReply(_ config: BenchConfig, options: NATSClient.Options) async throws(CLIError) {
        let requesters = max(config.publishers, 1)
        let responders = max(config.subscribers, 1)
        let payload = [UInt8](repeating: 0x61, count: config.size)
        var responderClients: [NATSClient] = []
        var responderTasks: [Task<Void, Never>] = []
        for index in 0..<responders {
            let client = try await connect(options, name: "nats-bench-reply-\(index)")
            // Answered on the reader thread, as nats.go's callback subscriptions answer.
            let sub = try await Commands.run("subscribe") {
                try await client.subscribe(config.subject, queue: "bench-responders") { message in
                    try? message.respondNow(message.payload)
                }
            }
            try await Commands.run("flush") { try await client.flush() }
            responderClients.append(client)
            responderTasks.append(Task {
                // Iterating a handler subscription yields nothing and ends with it.
                do {
                    for try await _ in sub {}
                } catch {}
            })
        }
        var clients: [NATSClient] = []
        for index in 0..<requesters { clients.append(try await connect(options, name: "nats-bench-req-\(index)")) }
        print("\(Format.clock()) Starting Core NATS request-reply benchmark [subject=\(config.subject), "
              + "msgs=\(Format.grouped(config.messages)), msgsize=\(config.size) B, requesters=\(requesters), responders=\(responders)]")
        let share = config.messages / requesters
        var tasks: [Task<(BenchSample, [Int64]), any Error>] = []
        for (index, client) in clients.enumerated() {
            let count = share + (index < config.messages - share * requesters ? 1 : 0)
            // Runs on the client's reader thread: each reply resumes the loop without a thread wake-up.
            tasks.append(Task(executorPreference: client.readerExecutor) {
                var latencies: [Int64] = []
                latencies.reserveCapacity(count)
                let start = ContinuousClock.now
                for _ in 0..<count {
                    let sent = ContinuousClock.now
                    _ = try await client.request(payload, subject: config.subject, timeout: .seconds(10))
                    let (s, atto) = (ContinuousClock.now - sent).components
                    latencies.append(s * 1_000_000_000 + atto / 1_000_000_000)
                }
                return (BenchSample(messages: count, bytes: count * payload.count, start: start, end: .now), latencies)
            })
        }
        var samples: [BenchSample] = []
        var latencies: [Int64] = []
        for task in tasks {
            do {
                let (sample, lat) = try await task.value
                samples.append(sample)
                latencies.append(contentsOf: lat)
            } catch {
                throw .failed("nats bench: request failed: \(error)")
            }
        }
        print("")
        report(label: "NATS Request/Reply stats", samples: samples, indent: "")
        latencies.sort()
        if !latencies.isEmpty {
            func percentile(_ p: Double) -> Int64 {
                // Nearest rank: the smallest value with at least p% of the samples at or below it.
                let rank = Int((p / 100 * Double(latencies.count)).rounded(.up))
                return latencies[min(max(rank - 1, 0), latencies.count - 1)]
            }
            let mean = latencies.reduce(0, +) / Int64(latencies.count)
            print(" Latency: min \(Format.latency(latencies[0])) | p50 \(Format.latency(percentile(50))) | "
                  + "p90 \(Format.latency(percentile(90))) | p99 \(Format.latency(percentile(99))) | "
                  + "p99.9 \(Format.latency(percentile(99.9))) | max \(Format.latency(latencies[latencies.count - 1])) | "
                  + "mean \(Format.latency(mean))")
        }
        for client in clients { await client.close() }
        for client in responderClients { await client.close() }
        for task in responderTasks { await task.value }
    }

    /// The aggregate line, then per-client lines and min/avg/max/stddev when there are several.
    static func report(label: String, samples: [BenchSample], indent: String, perClient: Bool = true) {
        guard let start = samples.map(\.start).min(), let end = samples.map(\.end).max() else { return }
        let total = BenchSample(messages: samples.reduce(0) { $0 + $1.messages }, bytes: samples.reduce(0) { $0 + $1.bytes },
                                start: start, end: end)
        print("\(label): \(Format.grouped(Int(total.rate))) msgs/sec ~ \(Format.fixed(total.throughput)) MB/sec")
        guard perClient, samples.count > 1 else { return }
        for (index, sample) in samples.enumerated() {
            print("\(indent) [\(index + 1)] \(Format.grouped(Int(sample.rate))) msgs/sec ~ \(Format.fixed(sample.throughput)) MB/sec "
                  + "(\(Format.grouped(sample.messages)) msgs)")
        }
        let rates = samples.map(\.rate)
        let average = rates.reduce(0, +) / Double(rates.count)
        let deviation = (rates.map { ($0 - average) * ($0 - average) }.reduce(0, +) / Double(rates.count)).squareRoot()
        print("\(indent) min \(Format.grouped(Int(rates.min() ?? 0))) | avg \(Format.grouped(Int(average))) | "
              + "max \(Format.grouped(Int(rates.max() ?? 0))) | stddev \(Format.grouped(Int(deviation))) msgs")
    }
}
