#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Formats

/// The limits and parallelism one transform runs with.
public struct TransformLimits: Sendable {
    /// MAX_INPUT_BYTES.
    public var maxInputBytes: Int
    /// MAX_RECORDS.
    public var maxRecords: Int
    /// MAX_PIPELINE_STEPS.
    public var maxPipelineSteps: Int
    /// TIME_BUDGET_MS.
    public var timeBudgetMilliseconds: Int
    /// Threads (at least 1).
    public var workers: Int
    /// Records per chunk; 0 picks ``ExecutionOptions/chunkSize(records:workers:)``.
    public var chunkSize: Int

    public init(maxInputBytes: Int = 32 << 20, maxRecords: Int = 1_000_000, maxPipelineSteps: Int = 32,
                timeBudgetMilliseconds: Int = 10_000, workers: Int = 1, chunkSize: Int = 0) {
        self.maxInputBytes = maxInputBytes
        self.maxRecords = maxRecords
        self.maxPipelineSteps = maxPipelineSteps
        self.timeBudgetMilliseconds = timeBudgetMilliseconds
        self.workers = max(1, workers)
        self.chunkSize = chunkSize
    }

    /// CPUs in this process's affinity mask (what `taskset` allows), else the active processor count.
    public static func availableCPUs() -> Int {
        typealias GetAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer?) -> Int32
        // sched_getaffinity is not exported by the Glibc module; look the symbol up instead.
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_getaffinity") {
            let call = unsafeBitCast(symbol, to: GetAffinity.self)
            var mask = [UInt8](repeating: 0, count: 1024)
            let status = mask.withUnsafeMutableBytes { call(0, $0.count, $0.baseAddress) }
            if status == 0 {
                let n = mask.reduce(0) { $0 + $1.nonzeroBitCount }
                if n > 0 { return n }
            }
        }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }
}

/// A parsed `data.transform` request.
struct TransformRequest: Sendable {
    var data: Dataset
    var joinWith: Dataset?
    var pipeline: [JSON]

    /// Parses a request body: `{"format": "json"|"csv", "data": [...] | "...", "csv": "...",
    /// "csv_types": "infer"|"strings", "pipeline": [...], "join_with": [...] | "..." | {...}}`.
    /// - Throws: ``TransformError`` 400 (not JSON, not an object), 413 (too many records), 422
    ///   (missing or ill-typed members, bad CSV shape).
    static func parse(_ body: [UInt8], maxRecords: Int, workers: Int = 1) throws(TransformError) -> TransformRequest {
        let parsed: Result<([JSONMember], [String: Dataset]), TransformError> = body.withUnsafeBufferPointer { buffer in
            var reader = DatasetReader(buffer)
            var members: [JSONMember] = []
            var datasets: [String: Dataset] = [:]
            do throws(TransformError) {
                guard reader.peek() == UInt8(ascii: "{") else { throw TransformError(400, "the request must be a JSON object") }
                reader.i += 1
                if reader.peek() == UInt8(ascii: "}") {
                    reader.i += 1
                } else {
                    while true {
                        guard reader.peek() == UInt8(ascii: "\"") else { throw reader.fail("expected a string key") }
                        let key = try reader.readString()
                        try reader.expect(UInt8(ascii: ":"), "':'")
                        if (key == "data" || key == "join_with") && reader.peek() == UInt8(ascii: "[") {
                            // A pipeline sent before the data tells how many fields derive steps add:
                            // records get room for them up front instead of growing one by one.
                            let spare = key == "data" ? derivedFieldCount(members.last { $0.key == "pipeline" }?.value) : 0
                            datasets[key] = try reader.readRecordsParallel(maxRecords: maxRecords, what: key, workers: workers, spare: spare)
                            members.removeAll { $0.key == key }
                        } else {
                            members.append(JSONMember(key, try reader.readValue(depth: 1)))
                            datasets[key] = nil
                        }
                        guard let next = reader.peek() else { throw reader.fail("unexpected end of input") }
                        reader.i += 1
                        if next == UInt8(ascii: "}") { break }
                        if next != UInt8(ascii: ",") { reader.i -= 1; throw reader.fail("expected ',' or '}'") }
                    }
                }
                try reader.expectEnd()
                return .success((members, datasets))
            } catch {
                return .failure(error)
            }
        }
        let (members, datasets) = try parsed.get()
        let object = JSON.object(members)

        let typing: CSVReader.Typing
        switch object["csv_types"]?.stringValue ?? "infer" {
        case "infer": typing = .infer
        case "strings": typing = .strings
        default: throw TransformError(422, "\"csv_types\" must be \"infer\" or \"strings\"")
        }
        let format = object["format"]?.stringValue ?? (object["csv"] != nil ? "csv" : "json")
        let data: Dataset
        switch format {
        case "json":
            if let d = datasets["data"] {
                data = d
            } else if let d = object["data"] {
                throw TransformError(422, "\"data\" must be an array of objects for format json, got \(d.typeName)")
            } else {
                throw TransformError(422, "missing \"data\" (an array of objects)")
            }
        case "csv":
            guard let text = object["csv"]?.stringValue ?? object["data"]?.stringValue else {
                throw TransformError(422, "format csv needs the CSV text in \"csv\" (or \"data\") as a string")
            }
            data = try CSVReader.parse(text, typing: typing, maxRecords: maxRecords, what: "csv")
        default:
            throw TransformError(422, "\"format\" must be \"json\" or \"csv\"")
        }

        var joinWith: Dataset? = datasets["join_with"]
        if let node = object["join_with"] {
            switch node {
            case .string(let text):
                joinWith = try CSVReader.parse(text, typing: typing, maxRecords: maxRecords, what: "join_with")
            case .object:
                let f = node["format"]?.stringValue ?? (node["csv"] != nil ? "csv" : "json")
                if f == "csv", let text = node["csv"]?.stringValue ?? node["data"]?.stringValue {
                    joinWith = try CSVReader.parse(text, typing: typing, maxRecords: maxRecords, what: "join_with")
                } else if f == "json", let elements = node["data"]?.elements {
                    joinWith = try dataset(elements, maxRecords: maxRecords, what: "join_with")
                } else {
                    throw TransformError(422, "\"join_with\" must be an array of objects, a CSV string, or {\"format\", \"data\"|\"csv\"}")
                }
            case .null:
                joinWith = nil
            default:
                throw TransformError(422, "\"join_with\" must be an array of objects, a CSV string, or {\"format\", \"data\"|\"csv\"}")
            }
        }

        let pipeline: [JSON]
        switch object["pipeline"] {
        case nil, .null?: pipeline = []
        case .array(let steps)?: pipeline = steps
        case let other?: throw TransformError(422, "\"pipeline\" must be an array of steps, got \(other.typeName)")
        }
        return TransformRequest(data: data, joinWith: joinWith, pipeline: pipeline)
    }

    /// How many fields the derive steps of `pipeline` may add (at most 8; a capacity hint only).
    static func derivedFieldCount(_ pipeline: JSON?) -> Int {
        guard let steps = pipeline?.elements else { return 0 }
        var n = 0
        for step in steps where step["op"]?.stringValue == "derive" {
            n += step["field"] != nil ? 1 : (step["fields"]?.members?.count ?? 0)
        }
        return min(n, 8)
    }

    /// A dataset from already-parsed JSON objects.
    static func dataset(_ elements: [JSON], maxRecords: Int, what: String) throws(TransformError) -> Dataset {
        guard elements.count <= maxRecords else {
            throw TransformError(413, "\(what): more than \(maxRecords) records (limit MAX_RECORDS)")
        }
        var fields: [String] = []
        var index: [String: Int] = [:]
        var rows: [[Value]] = []
        for (r, e) in elements.enumerated() {
            guard let members = e.members else { throw TransformError(422, "\(what): record \(r) is not a JSON object") }
            var row = [Value](repeating: .null, count: fields.count)
            for m in members {
                let slot: Int
                if let known = index[m.key] {
                    slot = known
                } else {
                    slot = fields.count
                    fields.append(m.key)
                    index[m.key] = slot
                }
                while row.count <= slot { row.append(.null) }
                guard let v = m.value.scalar else {
                    throw TransformError(422, "\(what): record \(r), field '\(m.key)': nested arrays and objects are not supported")
                }
                row[slot] = v
            }
            rows.append(row)
        }
        for r in rows.indices where rows[r].count < fields.count {
            rows[r].append(contentsOf: repeatElement(Value.null, count: fields.count - rows[r].count))
        }
        return Dataset(fields: fields, rows: rows)
    }
}

/// One whole transform: request bytes in, response bytes out.
public enum Transform {
    /// Parses, compiles and runs a request, and writes the response
    /// `{"fields": [...], "records": [...], "stats": {...}}`. CPU-bound and blocking: call it off
    /// the cooperative pool (``runDetached(_:)``).
    /// - Throws: ``TransformError``: 413 over `maxInputBytes` or `maxRecords`, 400 for invalid
    ///   JSON or CSV, 422 for a bad pipeline or a record error, 408 when the budget runs out.
    public static func execute(_ body: [UInt8], limits: TransformLimits) throws(TransformError) -> [UInt8] {
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(limits.timeBudgetMilliseconds)
        guard body.count <= limits.maxInputBytes else {
            throw TransformError(413, "the request is \(body.count) bytes; the limit is \(limits.maxInputBytes) (MAX_INPUT_BYTES)")
        }
        var request = try TransformRequest.parse(body, maxRecords: limits.maxRecords, workers: limits.workers)
        let parsed = ContinuousClock.now
        let pipeline = try Pipeline.compile(request.pipeline, fields: request.data.fields, joinWith: request.joinWith,
                                            maxSteps: limits.maxPipelineSteps)
        let chunk = limits.chunkSize > 0 ? limits.chunkSize
            : ExecutionOptions.chunkSize(records: request.data.count, workers: limits.workers)
        let options = ExecutionOptions(workers: limits.workers, chunkSize: chunk, deadline: deadline,
                                       timeBudgetMilliseconds: limits.timeBudgetMilliseconds, maxRecords: limits.maxRecords)
        let inputCount = request.data.count
        try options.checkBudget()
        // Hand the records over so the pipeline owns them alone (no copy-on-write per record).
        let data = request.data
        request.data = Dataset(fields: [], rows: [])
        let result = try pipeline.run(consume data, options: options)
        let ran = ContinuousClock.now
        var w = JSONWriter(capacity: 64 + result.dataset.count * 16 * max(1, result.dataset.fields.count))
        w.raw("{\"fields\":")
        w.value(.array(result.dataset.fields.map(JSON.string)))
        w.raw(",\"records\":")
        w.records(result.dataset)
        try options.checkBudget()
        w.raw(",\"stats\":")
        w.value(stats(result, input: inputCount, limits: limits, chunk: chunk,
                     parse: parsed - started, run: ran - parsed, write: ContinuousClock.now - ran))
        w.raw("}")
        return w.bytes
    }

    static func stats(_ result: PipelineResult, input: Int, limits: TransformLimits, chunk: Int,
                      parse: Duration, run: Duration, write: Duration) -> JSON {
        func ms(_ d: Duration) -> JSON {
            let v = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
            return .double((v * 1000).rounded() / 1000)
        }
        let steps: [JSON] = result.steps.enumerated().map { k, s in
            var m = [JSONMember("op", .string(s.op)), JSONMember("records_in", .int(Int64(s.recordsIn))),
                     JSONMember("records_out", .int(Int64(s.recordsOut)))]
            if k < result.timings.count {
                m.append(JSONMember("stage", .int(Int64(result.timings[k].stage))))
                m.append(JSONMember("stage_ms", .double(result.timings[k].milliseconds)))
            }
            if s.op == "validate" {
                m.append(JSONMember("rejected", .int(Int64(s.rejected))))
                m.append(JSONMember("rejections", .array(s.rejections.map { r in
                    .object([JSONMember("record", .int(Int64(r.record))), JSONMember("errors", .array(r.errors.map(JSON.string)))])
                })))
            }
            if s.op == "normalize" { m.append(JSONMember("unparseable", .int(Int64(s.unparseable)))) }
            return .object(m)
        }
        return .object([
            JSONMember("input_records", .int(Int64(input))),
            JSONMember("output_records", .int(Int64(result.dataset.count))),
            JSONMember("workers", .int(Int64(limits.workers))),
            JSONMember("chunk_size", .int(Int64(chunk))),
            JSONMember("parse_ms", ms(parse)),
            JSONMember("pipeline_ms", ms(run)),
            JSONMember("write_ms", ms(write)),
            JSONMember("steps", .array(steps)),
        ])
    }

    /// Runs blocking `work` on a GCD thread (not the cooperative pool) and returns its result.
    public static func runDetached<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: work()) }
        }
    }
}
