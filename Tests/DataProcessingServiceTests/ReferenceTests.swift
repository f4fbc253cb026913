// Group-by, join, sort and dedup against naive reference implementations.

@testable import DataProcessingService
import TestSupport
import Testing

@Suite struct AgainstNaiveReferences {
    /// Nearest rank: the smallest value with at least p% of the values at or below it.
    func naivePercentile(_ values: [Double], _ p: Double) -> Double? {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return nil }
        for (i, v) in sorted.enumerated() where Double(i + 1) / Double(sorted.count) * 100 >= p - 1e-9 { return v }
        return sorted.last
    }

    @Test func percentilesAndAggregatesMatchNaive() throws {
        let data = randomDataset(3000, seed: 77)
        let spec = try steps(#"[{"op":"group","by":["k"],"aggregates":[{"fn":"count"},{"fn":"p50","field":"x"},{"fn":"p90","field":"x"},{"fn":"p99","field":"x"},{"fn":"p0","field":"x"},{"fn":"p100","field":"x"},{"fn":"sum","field":"n"},{"fn":"mean","field":"n"},{"fn":"min","field":"x"},{"fn":"max","field":"x"}]}]"#)
        for (workers, chunk) in [(1, Int.max), (2, 7)] {
            guard case .success(let r) = outcome(spec, data, workers: workers, chunkSize: chunk) else { Issue.record("group failed"); return }
            let k = 1, n = 2, x = 3
            var order: [Value] = []
            for row in data.rows where !order.contains(row[k]) { order.append(row[k]) }
            #expect(r.dataset.rows.map { $0[0] } == order, "groups in order of first appearance")
            for out in r.dataset.rows {
                let members = data.rows.filter { $0[k] == out[0] }
                let xs = members.compactMap { $0[x].numeric }
                let ns = members.compactMap { row -> Int64? in if case .int(let v) = row[n] { return v } else { return nil } }
                #expect(out[1] == .int(Int64(members.count)))
                for (col, p) in [(2, 50.0), (3, 90), (4, 99), (5, 0), (6, 100)] {
                    #expect(out[col].numeric == naivePercentile(xs, p), "p\(p) of \(out[0])")
                }
                #expect(out[7] == .int(ns.reduce(0, +)))
                #expect(out[8].numeric.map { abs($0 - Double(ns.reduce(0, +)) / Double(ns.count)) < 1e-9 } == true)
                #expect(out[9].numeric == xs.min())
                #expect(out[10].numeric == xs.max())
            }
        }
    }

    @Test func percentileRanksOnSmallLists() {
        #expect(Pipeline.percentileValue([1, 2, 3, 4], 50, asInt: true) == .int(2))
        #expect(Pipeline.percentileValue([1, 2, 3, 4], 51, asInt: true) == .int(3))
        #expect(Pipeline.percentileValue([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, asInt: true) == .int(9))
        #expect(Pipeline.percentileValue([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 70, asInt: true) == .int(7))
        #expect(Pipeline.percentileValue([5], 99, asInt: false) == .double(5))
        #expect(Pipeline.percentileValue([1.5, 2.5], 0, asInt: false) == .double(1.5))
    }

    @Test func selectionFindsTheSortedValue() {
        var g = SeededGenerator(seed: 31)
        for trial in 0..<300 {
            let n = Int.random(in: 1...200, using: &g)
            let spread = trial % 3 == 0 ? 3.0 : 1000.0   // many duplicates in a third of the trials
            let values = (0..<n).map { _ in (Double.random(in: 0..<spread, using: &g)).rounded() }
            let sorted = values.sorted()
            var ranks = (0..<Int.random(in: 1...4, using: &g)).map { _ in Int.random(in: 0..<n, using: &g) }
            ranks = Array(Set(ranks)).sorted()
            var work = values
            var lo = 0
            work.withUnsafeMutableBufferPointer { a in
                for k in ranks {
                    Pipeline.select(a, k, lo, n)
                    #expect(a[k] == sorted[k], "n \(n) rank \(k)")
                    lo = k + 1
                }
            }
            #expect(work.sorted() == sorted)
        }
    }

    @Test(arguments: ["inner", "left"])
    func joinMatchesNestedLoops(_ type: String) throws {
        let left = randomDataset(400, seed: 5)
        var g = SeededGenerator(seed: 6)
        var rightRows: [[Value]] = []
        for i in 0..<60 {
            let key: Value = Int.random(in: 0..<8, using: &g) == 0 ? .null : .string("k\(Int.random(in: 0..<9, using: &g))")
            rightRows.append([key, .int(Int64(i)), .int(Int64.random(in: -5...5, using: &g))])
        }
        let right = Dataset(fields: ["k", "n", "w"], rows: rightRows)
        let spec = try steps(#"[{"op":"join","type":"\#(type)","on":["k"]}]"#)
        var expected: [[Value]] = []
        for l in left.rows {
            var matched = false
            for r in right.rows where !l[1].isNull && l[1] == r[0] {
                expected.append(l + [r[1], r[2]])
                matched = true
            }
            if !matched && type == "left" { expected.append(l + [.null, .null]) }
        }
        for (workers, chunk) in [(1, Int.max), (2, 13), (3, 1)] {
            guard case .success(let result) = outcome(spec, left, joinWith: right, workers: workers, chunkSize: chunk) else {
                Issue.record("join failed"); return
            }
            #expect(result.dataset.fields == left.fields + ["right_n", "w"])
            #expect(result.dataset.rows == expected)
        }
    }

    @Test func joinOnDifferentKeyNamesKeepsBothColumns() throws {
        let users = try dataset(#"[{"id":1,"name":"Ann"},{"id":2,"name":"Bo"},{"id":3,"name":"Cy"}]"#)
        let orders = try dataset(#"[{"user_id":2,"total":5},{"user_id":1,"total":7},{"user_id":2,"total":1},{"user_id":9,"total":4}]"#)
        guard case .success(let r) = outcome(try steps(#"[{"op":"join","on":{"left":"id","right":"user_id"}}]"#), users, joinWith: orders) else {
            Issue.record("join failed"); return
        }
        #expect(r.dataset.fields == ["id", "name", "user_id", "total"])
        #expect(r.dataset.rows == [[.int(1), .string("Ann"), .int(1), .int(7)], [.int(2), .string("Bo"), .int(2), .int(5)],
                                   [.int(2), .string("Bo"), .int(2), .int(1)]])
    }

    @Test func sortIsStableAndDedupKeepsFirst() throws {
        let data = randomDataset(700, seed: 11)
        let k = 1, x = 3
        // Stable insertion sort as the reference.
        var expected: [[Value]] = []
        for row in data.rows {
            var i = expected.count
            while i > 0 {
                let c = Value.compare(expected[i - 1][k], row[k])
                let d = Value.compare(expected[i - 1][x], row[x])
                if c < 0 || (c == 0 && d >= 0) { break }   // k asc, then x desc
                i -= 1
            }
            expected.insert(row, at: i)
        }
        let sortSpec = try steps(#"[{"op":"sort","by":["k",{"field":"x","order":"desc"}]}]"#)
        for (workers, chunk) in [(1, Int.max), (2, 9), (2, 1)] {
            guard case .success(let r) = outcome(sortSpec, data, workers: workers, chunkSize: chunk) else { Issue.record("sort failed"); return }
            #expect(r.dataset.rows == expected)
        }
        var seen: [[Value]] = []
        var firsts: [[Value]] = []
        for row in data.rows where !seen.contains([row[k], row[5]]) {
            seen.append([row[k], row[5]])
            firsts.append(row)
        }
        guard case .success(let d) = outcome(try steps(#"[{"op":"dedup","keys":["k","email"]}]"#), data, workers: 2, chunkSize: 10) else {
            Issue.record("dedup failed"); return
        }
        #expect(d.dataset.rows == firsts)
    }

    @Test func numericSortMatchesReference() throws {
        var data = randomDataset(900, seed: 12)
        data.rows[3][3] = .double(-0.0)
        data.rows[4][3] = .int(0)
        data.rows[5][3] = .double(0.0)
        let n = 2, x = 3
        func before(_ a: [Value], _ b: [Value]) -> Bool {   // n desc, then x asc
            let c = Value.compare(a[n], b[n])
            if c != 0 { return c > 0 }
            return Value.compare(a[x], b[x]) < 0
        }
        var expected: [[Value]] = []
        for row in data.rows {
            var i = expected.count
            while i > 0 && before(row, expected[i - 1]) { i -= 1 }
            expected.insert(row, at: i)
        }
        let spec = try steps(#"[{"op":"sort","by":[{"field":"n","order":"desc"},"x"]}]"#)
        for (workers, chunk) in [(1, Int.max), (2, 11), (3, 1)] {
            guard case .success(let r) = outcome(spec, data, workers: workers, chunkSize: chunk) else { Issue.record("sort failed"); return }
            #expect(r.dataset.rows == expected)
        }
    }

    @Test func validateReportsEveryRuleAndCounts() throws {
        let data = try dataset(#"[{"age":30,"email":"a@x.io"},{"age":-1,"email":5},{"email":"b@x.io"},{"age":200,"email":"c"}]"#)
        let spec = try steps(#"[{"op":"validate","schema":{"age":{"type":"int","required":true,"min":0,"max":150},"email":{"type":"string","min_length":3}}}]"#)
        guard case .success(let r) = outcome(spec, data, workers: 2, chunkSize: 1) else { Issue.record("validate failed"); return }
        #expect(r.dataset.rows == [[.int(30), .string("a@x.io")]])
        #expect(r.steps[0].rejected == 3)
        #expect(r.steps[0].rejections == [
            Rejection(record: 1, errors: ["age: -1 is below the minimum 0", "email: expected string, got int"]),
            Rejection(record: 2, errors: ["age: required"]),
            Rejection(record: 3, errors: ["age: 200 is above the maximum 150", "email: shorter than 3"]),
        ])
        let failing = try steps(#"[{"op":"validate","mode":"fail","schema":{"age":{"type":"int","required":true}}}]"#)
        #expect(outcome(failing, data, workers: 2, chunkSize: 1) == .failure(TransformError(422, "pipeline step 1 (validate): record 2: validation failed: age: required")))
    }
}
