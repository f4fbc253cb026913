// Every limit is answered with its own error instead of running on.

@testable import DataProcessingService
import TestSupport
import Testing

@Suite struct Limits {
    func records(_ n: Int) -> String {
        "[" + (0..<n).map { #"{"id":\#($0),"k":"k\#($0 % 5)","v":\#($0 % 13)}"# }.joined(separator: ",") + "]"
    }

    func status(_ body: String, _ limits: TransformLimits) -> TransformError? {
        do { _ = try Transform.execute(Array(body.utf8), limits: limits); return nil } catch { return error }
    }

    @Test func inputBytes() {
        let body = #"{"data":\#(records(100)),"pipeline":[]}"#
        let e = status(body, TransformLimits(maxInputBytes: 1024))
        #expect(e?.status == 413)
        #expect(e?.message.contains("MAX_INPUT_BYTES") == true)
        #expect(status(body, TransformLimits(maxInputBytes: body.utf8.count)) == nil)
    }

    @Test func recordCountOfDataJoinWithAndCSV() {
        let e = status(#"{"data":\#(records(11)),"pipeline":[]}"#, TransformLimits(maxRecords: 10))
        #expect(e?.status == 413)
        #expect(e?.message == "data: more than 10 records (limit MAX_RECORDS)")
        #expect(status(#"{"data":\#(records(10)),"pipeline":[]}"#, TransformLimits(maxRecords: 10)) == nil)
        let csv = "id\\n" + (0..<11).map(String.init).joined(separator: "\\n")
        #expect(status(#"{"format":"csv","csv":"\#(csv)"}"#, TransformLimits(maxRecords: 10))?.status == 413)
        #expect(status(#"{"data":[],"join_with":\#(records(11))}"#, TransformLimits(maxRecords: 10))?.message.hasPrefix("join_with") == true)
    }

    @Test func joinOutputCannotExceedTheRecordLimit() {
        // 10 x 10 rows all with the same key: 100 output rows over a limit of 50.
        let many = "[" + (0..<10).map { #"{"k":1,"i":\#($0)}"# }.joined(separator: ",") + "]"
        let body = #"{"data":\#(many),"join_with":\#(many),"pipeline":[{"op":"join","on":["k"]}]}"#
        for workers in [1, 2] {
            let e = status(body, TransformLimits(maxRecords: 50, workers: workers, chunkSize: 3))
            #expect(e == TransformError(413, "pipeline step 1 (join): more than 50 records (limit MAX_RECORDS)"))
        }
    }

    @Test func pipelineSteps() {
        let step = #"{"op":"limit","count":5}"#
        let body = #"{"data":[],"pipeline":[\#(Array(repeating: step, count: 4).joined(separator: ","))]}"#
        let e = status(body, TransformLimits(maxPipelineSteps: 3))
        #expect(e == TransformError(422, "pipeline has 4 steps; the limit is 3 (MAX_PIPELINE_STEPS)"))
        #expect(status(body, TransformLimits(maxPipelineSteps: 4)) == nil)
    }

    @Test func timeBudget() throws {
        // An expired deadline stops the pipeline between chunks.
        let data = randomDataset(5000, seed: 3)
        let pipeline = try Pipeline.compile(try steps(#"[{"op":"filter","where":"n > 0"},{"op":"sort","by":["x"]}]"#), fields: data.fields)
        for workers in [1, 2] {
            let options = ExecutionOptions(workers: workers, chunkSize: 100, deadline: .now - .seconds(1), timeBudgetMilliseconds: 5)
            #expect(throws: TransformError(408, "the time budget of 5 ms (TIME_BUDGET_MS) ran out")) {
                try pipeline.run(data, options: options)
            }
        }
        // Parsing 50,000 records takes far longer than 1 ms, so a whole request runs out too.
        let e = status(#"{"data":\#(records(50_000)),"pipeline":[{"op":"sort","by":["v"]}]}"#, TransformLimits(timeBudgetMilliseconds: 1))
        #expect(e?.status == 408)
        #expect(e?.message.contains("TIME_BUDGET_MS") == true)
    }

    /// The operations the error lists are the ones the compiler knows: each one listed compiles
    /// (with a missing option it fails on that option, not as unknown), and the text is unchanged.
    @Test func theUnknownOpErrorListsEveryOperation() {
        let e = status(#"{"data":[{"a":1}],"pipeline":[{"op":"explode"}]}"#, TransformLimits())
        #expect(e == TransformError(422, "pipeline step 1 (explode): unknown op 'explode' (known: validate, filter, project, rename, derive, normalize, dedup, sort, group, join, limit)"))
        for operation in Operation.allCases {
            let e = status(#"{"data":[{"a":1}],"pipeline":[{"op":"\#(operation.rawValue)"}]}"#, TransformLimits())
            #expect(e?.message.contains("unknown op") != true, "\(operation)")
        }
    }

    @Test func nestingDepthOfJSONAndExpressions() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(status(#"{"data":[],"pipeline":\#(deep)}"#, TransformLimits())?.status == 400)
        let expr = String(repeating: "(", count: 100) + "id" + String(repeating: ")", count: 100)
        let e = status(#"{"data":\#(records(2)),"pipeline":[{"op":"filter","where":"\#(expr) > 1"}]}"#, TransformLimits())
        #expect(e?.status == 422)
        #expect(e?.message.contains("deeper than 64") == true)
    }

    @Test func jobQueueIsBounded() {
        let queue = JobQueue<String>(maxRunning: 2, maxQueued: 1)
        func job(_ id: String) -> String { id }
        guard case .start = queue.submit(job("a")), case .start = queue.submit(job("b")) else { Issue.record("first two should start"); return }
        guard case .queued = queue.submit(job("c")) else { Issue.record("third should queue"); return }
        guard case .rejected = queue.submit(job("d")) else { Issue.record("fourth should be refused"); return }
        #expect(queue.counts == (2, 1))
        #expect(queue.finished() == "c")
        #expect(queue.counts == (2, 0))
        #expect(queue.finished() == nil)
        #expect(queue.finished() == nil)
        #expect(queue.counts == (0, 0))
    }

    @Test func jobRegistryIsBounded() {
        let registry = JobRegistry(maxJobs: 3, maxBytes: 10)
        registry.set("a", .queued)
        registry.set("a", .running)
        registry.set("a", .finished([1, 2, 3, 4]))
        #expect(registry.state("a") == .finished([1, 2, 3, 4]))
        registry.set("b", .finished(Array(repeating: 0, count: 8)))   // 12 bytes: "a" goes
        #expect(registry.state("a") == nil)
        #expect(registry.state("b") != nil)
        for id in ["c", "d", "e"] { registry.set(id, .queued) }          // 4 jobs: "b" goes
        #expect(registry.state("b") == nil)
        #expect(registry.state("e") == .queued)
        registry.remove("e")
        #expect(registry.state("e") == nil)
    }

    @Test func badRequestsAreClearErrors() {
        let cases: [(String, Int, String)] = [
            ("not json", 400, "must be a JSON object"),
            ("{not json", 400, "invalid JSON at byte 1"),
            ("[1]", 400, "must be a JSON object"),
            (#"{"pipeline":[]}"#, 422, "missing \"data\""),
            (#"{"data":{"a":1}}"#, 422, "must be an array of objects"),
            (#"{"data":[1,2]}"#, 422, "record 0 is not a JSON object"),
            (#"{"data":[{"a":[1]}]}"#, 422, "nested arrays and objects"),
            (#"{"data":[],"format":"xml"}"#, 422, "\"format\""),
            (#"{"data":[{"a":1}],"pipeline":[{"op":"explode"}]}"#, 422, "unknown op 'explode'"),
            (#"{"data":[{"a":1}],"pipeline":[{"op":"project","fields":["b"]}]}"#, 422, "pipeline step 1 (project): unknown field 'b'"),
            (#"{"data":[{"a":1}],"pipeline":[{"op":"join","on":["a"]}]}"#, 422, "join_with"),
            (#"{"data":[{"a":1}],"pipeline":[{"op":"filter","where":"a +* 2"}]}"#, 422, "at position 4"),
            (#"{"data":[{"a":"x"}],"pipeline":[{"op":"derive","field":"b","expr":"a * 2"}]}"#, 422, "pipeline step 1 (derive): record 0: 'b': '*' needs numbers, got string and int at position 3"),
            (#"{"data":[{"a":1}],"pipeline":[{"op":"filter","where":"a + 1"}]}"#, 422, "not a boolean"),
            (#"{"data":[{"a":1}],"pipeline":[{"op":"group","aggregates":[{"fn":"p101","field":"a"}]}]}"#, 422, "percentile"),
        ]
        for (body, code, text) in cases {
            let e = status(body, TransformLimits())
            #expect(e?.status == code, "\(body)")
            #expect(e?.message.contains(text) == true, "\(body): \(String(describing: e))")
        }
    }
}
