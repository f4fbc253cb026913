// Garbage in gives an error out, never a crash: random bytes, mutated requests, random CSV and
// random expressions (seeded, so a failure reproduces).

@testable import DataProcessingService
import TestSupport
import Testing

@Suite struct Robustness {
    static let request = Array(#"""
        {"format":"json","data":[{"a":1,"b":"x,y","t":"2026-11-23 17:02:14"},{"a":2.5,"b":null,"t":1700000000}],
         "join_with":[{"b":"x,y","w":3}],
         "pipeline":[{"op":"validate","schema":{"a":{"type":"number","min":0}}},{"op":"filter","where":"a > 0 or b = 'q'"},
                     {"op":"derive","fields":{"c":"round(a * 2, 1)","d":"concat(b, '-', len(b))"}},{"op":"normalize","fields":{"t":"timestamp"}},
                     {"op":"join","type":"left","on":["b"]},{"op":"dedup","keys":["a"]},{"op":"sort","by":[{"field":"c","order":"desc"}]},
                     {"op":"group","by":["b"],"aggregates":[{"fn":"count"},{"fn":"p90","field":"a"}]}]}
        """#.utf8)

    @Test func mutatedRequestsNeverCrash() {
        var g = SeededGenerator(seed: 2024)
        let limits = TransformLimits(maxInputBytes: 1 << 20, maxRecords: 1000, workers: 2, chunkSize: 1)
        var ok = 0, failed = 0
        for round in 0..<3000 {
            var body = Self.request
            let edits = Int.random(in: 1...4, using: &g)
            for _ in 0..<edits where !body.isEmpty {
                let at = Int.random(in: 0..<body.count, using: &g)
                switch Int.random(in: 0..<3, using: &g) {
                case 0: body[at] = UInt8.random(in: 0...255, using: &g)
                case 1: body.remove(at: at)
                default: body.insert(Array("{}[],:\"\\0-e.'`()*".utf8).randomElement(using: &g) ?? 0, at: at)
                }
            }
            if round % 10 == 0 { body = g.bytes(Int.random(in: 0..<200, using: &g)) }
            do {
                _ = try Transform.execute(body, limits: limits)
                ok += 1
            } catch {
                failed += 1
                #expect([400, 408, 413, 422].contains(error.status), "\(error)")
            }
        }
        #expect(ok > 0 && failed > 0)
    }

    @Test func randomCSVNeverCrashes() {
        var g = SeededGenerator(seed: 7)
        let alphabet = Array("ab,\"\r\n 1.-e".utf8)
        for _ in 0..<3000 {
            let bytes = (0..<Int.random(in: 0..<60, using: &g)).map { _ in alphabet.randomElement(using: &g) ?? 0 }
            do throws(TransformError) {
                let d = try CSVReader.parse(String(decoding: bytes, as: UTF8.self), maxRecords: 100)
                #expect(d.rows.allSatisfy { $0.count == d.fields.count })
            } catch {
                #expect([400, 413, 422].contains(error.status))
            }
        }
    }

    @Test func randomExpressionsNeverCrash() {
        var g = SeededGenerator(seed: 99)
        let tokens = ["a", "b", "s", "1", "0", "2.5", "-", "+", "*", "/", "%", "(", ")", "and", "or", "not", "=", "<", ">=",
                      "'x'", "null", "true", ",", "round(", "len(", "substr(", "if(", "coalesce(", "min(", "`a`", "9223372036854775807"]
        let fields = ["a", "b", "s"]
        let rows: [[Value]] = [[.int(3), .double(-0.5), .string("héllo")], [.null, .int(.min), .string("")], [.int(.max), .double(1e308), .null]]
        var parsed = 0
        for _ in 0..<20000 {
            let text = (0..<Int.random(in: 1...9, using: &g)).map { _ in tokens.randomElement(using: &g) ?? "" }.joined(separator: " ")
            guard let e = try? Expression(text, fields: fields) else { continue }
            parsed += 1
            for row in rows {
                if case .double(let d)? = try? e.evaluate(row) { #expect(d.isFinite, "\(text)") }
            }
        }
        #expect(parsed > 100)
    }
}
