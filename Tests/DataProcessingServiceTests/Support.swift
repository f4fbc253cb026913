// Helpers for the data-processing tests: seeded random datasets, pipeline parsing, and running
// the same pipeline sequentially and chunked in parallel.

@testable import DataProcessingService
import Formats
import TestSupport

/// A pipeline spec (a JSON array of steps) parsed into nodes.
func steps(_ json: String) throws -> [JSON] {
    guard case .array(let a) = try DatasetReader.parse(Array(json.utf8)) else { throw TestFailure("not an array: \(json)") }
    return a
}

/// A dataset from a JSON array of objects.
func dataset(_ json: String) throws -> Dataset {
    try Array(json.utf8).withUnsafeBufferPointer { b throws -> Dataset in
        var reader = DatasetReader(b)
        return try reader.readRecords(maxRecords: .max)
    }
}

/// Compiles and runs `spec`; the outcome (result or error) so runs can be compared.
func outcome(_ spec: [JSON], _ data: Dataset, joinWith: Dataset? = nil, workers: Int = 1,
             chunkSize: Int = .max, maxRecords: Int = .max) -> Result<PipelineResult, TransformError> {
    do throws(TransformError) {
        let pipeline = try Pipeline.compile(spec, fields: data.fields, joinWith: joinWith)
        let options = ExecutionOptions(workers: workers, chunkSize: chunkSize, maxRecords: maxRecords, maxReportedRejections: 5)
        return .success(try pipeline.run(data, options: options))
    } catch {
        return .failure(error)
    }
}

/// The chunkings every parallel test compares with the sequential run (one chunk, one thread):
/// chunk size 1, sizes that do not divide the input, one larger than it, on 1, 2 and 3 workers.
let chunkings: [(workers: Int, chunk: Int)] = [(1, 1), (2, 1), (2, 3), (3, 7), (2, 64), (4, 97), (2, 5000)]

/// A random dataset shaped like event data: ids, a low-cardinality key with nulls, ints and
/// doubles with nulls, messy strings and timestamps in several formats.
func randomDataset(_ count: Int, seed: UInt64) -> Dataset {
    var g = SeededGenerator(seed: seed)
    let words = ["Alpha", " beta", "GAMMA ", "delta", "Epsilon", "zeta  eta", ""]
    let domains = ["example.com", "Example.org", "mail.test"]
    var rows: [[Value]] = []
    for i in 0..<count {
        let key: Value = Int.random(in: 0..<10, using: &g) == 0 ? .null : .string("k\(Int.random(in: 0..<6, using: &g))")
        let n: Value = Int.random(in: 0..<12, using: &g) == 0 ? .null : .int(Int64.random(in: -100...100, using: &g))
        let x: Value
        switch Int.random(in: 0..<4, using: &g) {
        case 0: x = .int(Int64.random(in: 0...50, using: &g))
        case 1: x = .null
        default: x = .double((Double.random(in: -1000...1000, using: &g) * 100).rounded() / 100)
        }
        let word = words[Int.random(in: 0..<words.count, using: &g)]
        let email: Value = .string("User\(Int.random(in: 0..<50, using: &g))@\(domains[Int.random(in: 0..<domains.count, using: &g)])")
        let epoch = Int64.random(in: 1_600_000_000...1_800_000_000, using: &g)
        let t: Value
        switch Int.random(in: 0..<5, using: &g) {
        case 0: t = .int(epoch)
        case 1: t = .int(epoch * 1000 + Int64.random(in: 0..<1000, using: &g))
        case 2: t = .string(DatasetTime.format(epoch * 1000).map { String($0.prefix(19)).replacing("T", with: " ") } ?? "")
        case 3: t = .string(DatasetTime.format(epoch * 1000 + 123) ?? "")
        default: t = .string("not a time")
        }
        rows.append([.int(Int64(i)), key, n, x, .string(word), email, t])
    }
    return Dataset(fields: ["id", "k", "n", "x", "s", "email", "t"], rows: rows)
}
