// The parallel path must give exactly the sequential result (records, order, stats, errors)
// for every operation and whole pipelines, whatever the worker count and chunk size.

@testable import DataProcessingService
import TestSupport
import Testing

@Suite struct ParallelEqualsSequential {
    static let right: Dataset = {
        var rows: [[Value]] = []
        for i in 0..<9 {
            rows.append([.string("k\(i % 7)"), .int(Int64(i)), .string("label \(i)")])
        }
        rows.append([.null, .int(99), .string("null key")])
        return Dataset(fields: ["k", "weight", "label"], rows: rows)
    }()

    static let pipelines: [(String, String)] = [
        ("validate reject", #"[{"op":"validate","schema":{"n":{"type":"int","required":true,"min":-50,"max":80},"x":"number","k":{"type":"string","one_of":["k1","k2","k3"]}}}]"#),
        ("validate fail", #"[{"op":"validate","mode":"fail","schema":{"n":{"type":"int","required":true}}}]"#),
        ("filter", #"[{"op":"filter","where":"n > 10 and (x < 100 or k = 'k2') and not is_null(k)"}]"#),
        ("project", #"[{"op":"project","fields":["email","id","k"]}]"#),
        ("rename", #"[{"op":"rename","fields":{"k":"key","n":"number"}}]"#),
        ("derive", #"[{"op":"derive","fields":{"y":"round(coalesce(x, 0) * 2 + n % 7, 1)","tag":"concat(lower(trim(s)), '-', len(s))","n":"abs(n) - 3"}}]"#),
        ("derive error", #"[{"op":"derive","field":"bad","expr":"if(n > 90, s * 2, n)"}]"#),
        ("normalize", #"[{"op":"normalize","fields":{"s":["trim","lower","collapse_spaces"],"email":"lower","t":"timestamp"}}]"#),
        ("dedup", #"[{"op":"dedup","keys":["k","email"]}]"#),
        ("dedup whole", #"[{"op":"project","fields":["k","s"]},{"op":"dedup"}]"#),
        ("sort", #"[{"op":"sort","by":[{"field":"k","order":"desc"},"x",{"field":"s","order":"asc"}]}]"#),
        ("sort ties", #"[{"op":"sort","by":["k"]}]"#),
        ("group", #"[{"op":"group","by":["k"],"aggregates":[{"fn":"count"},{"fn":"count","field":"x","as":"xs"},{"fn":"sum","field":"n"},{"fn":"sum","field":"x"},{"fn":"mean","field":"x"},{"fn":"min","field":"s"},{"fn":"max","field":"x"},{"fn":"p50","field":"x"},{"fn":"p90","field":"n"},{"fn":"p99","field":"x"}]}]"#),
        ("group all", #"[{"op":"group","aggregates":[{"fn":"count"},{"fn":"mean","field":"n"},{"fn":"p99.9","field":"x"}]}]"#),
        ("group error", #"[{"op":"group","by":["k"],"aggregates":[{"fn":"sum","field":"s"}]}]"#),
        ("inner join", #"[{"op":"join","on":["k"]}]"#),
        ("left join", #"[{"op":"join","type":"left","on":{"left":["k"],"right":["k"]},"prefix":"r_"}]"#),
        ("limit", #"[{"op":"sort","by":["x"]},{"op":"limit","count":17}]"#),
        ("whole", #"""
            [{"op":"validate","schema":{"n":{"type":"int","required":true}}},
             {"op":"normalize","fields":{"email":["trim","lower"],"t":"timestamp"}},
             {"op":"filter","where":"n >= -20"},
             {"op":"derive","fields":{"score":"n * 2 + coalesce(x, 0) / 4","domain":"substr(email, 5)"}},
             {"op":"join","type":"left","on":["k"]},
             {"op":"dedup","keys":["email","k"]},
             {"op":"sort","by":[{"field":"score","order":"desc"},"id"]},
             {"op":"group","by":["k","label"],"aggregates":[{"fn":"count"},{"fn":"p50","field":"score"},{"fn":"p90","field":"score"},{"fn":"sum","field":"x"}]},
             {"op":"sort","by":["k"]}]
            """#),
    ]

    @Test(arguments: pipelines.indices)
    func sameResultForEveryChunking(_ p: Int) throws {
        let (name, json) = Self.pipelines[p]
        let spec = try steps(json)
        for seed: UInt64 in [1, 2, 3] {
            let data = randomDataset(seed == 1 ? 257 : 1000 + Int(seed) * 37, seed: seed &* 7919 &+ UInt64(p))
            let sequential = outcome(spec, data, joinWith: Self.right)
            if case .failure(let e) = sequential, !name.contains("error") && !name.contains("fail") {
                Issue.record("\(name): sequential run failed: \(e)")
            }
            for (workers, chunk) in chunkings {
                let parallel = outcome(spec, data, joinWith: Self.right, workers: workers, chunkSize: chunk)
                #expect(parallel == sequential, "\(name), seed \(seed), \(workers) workers, chunk \(chunk)")
            }
        }
    }

    @Test func errorCasesReallyFail() throws {
        let data = randomDataset(500, seed: 42)
        for name in ["derive error", "validate fail", "group error"] {
            let json = try #require(Self.pipelines.first { $0.0 == name }).1
            guard case .failure(let e) = outcome(try steps(json), data, joinWith: Self.right, workers: 2, chunkSize: 3) else {
                Issue.record("\(name) did not fail"); continue
            }
            #expect(e.status == 422)
            #expect(e.message.contains("record "), "\(e)")
        }
    }

    @Test func emptyInputs() throws {
        let empty = Dataset(fields: ["id", "k", "n", "x", "s", "email", "t"], rows: [])
        for (_, json) in Self.pipelines {
            let spec = try steps(json)
            #expect(outcome(spec, empty, joinWith: Self.right, workers: 2, chunkSize: 1) == outcome(spec, empty, joinWith: Self.right))
        }
        guard case .success(let r) = outcome(try steps(#"[{"op":"group","aggregates":[{"fn":"count"},{"fn":"sum","field":"n"}]}]"#), empty) else {
            Issue.record("group over nothing failed"); return
        }
        #expect(r.dataset.rows == [[.int(0), .null]])
    }
}
