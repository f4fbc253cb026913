@testable import DataProcessingService
import Formats
import Testing
import TestSupport

@Suite struct CSVParsing {
    func parse(_ text: String, _ typing: CSVReader.Typing = .infer) throws(TransformError) -> Dataset {
        try CSVReader.parse(text, typing: typing, maxRecords: 1000)
    }

    @Test func quotesEscapesAndLineBreaks() throws {
        let d = try parse("name,note,n\r\n\"Lee, Ann\",\"said \"\"hi\"\"\",1\r\n\"multi\r\nline\",,2.5\r\n")
        #expect(d.fields == ["name", "note", "n"])
        #expect(d.rows == [[.string("Lee, Ann"), .string("said \"hi\""), .int(1)],
                           [.string("multi\r\nline"), .null, .double(2.5)]])
    }

    @Test func typeInferenceAndStrings() throws {
        let text = "a,b,c,d,e,f\ntrue,-12,1e3,\"42\",x1,\n"
        #expect(try parse(text).rows == [[.bool(true), .int(-12), .double(1000), .string("42"), .string("x1"), .null]])
        #expect(try parse(text, .strings).rows == [[.string("true"), .string("-12"), .string("1e3"), .string("42"), .string("x1"), .string("")]])
        #expect(try parse("a\n99999999999999999999\n").rows == [[.double(1e20)]])
        #expect(try parse("a\n1.2.3\n").rows == [[.string("1.2.3")]])
    }

    @Test func lineEndingsBOMAndEmptyLines() throws {
        let d = try parse("\u{FEFF}a,b\n1,2\r\n\n3,4\r5,6")
        #expect(d.fields == ["a", "b"])
        #expect(d.rows == [[.int(1), .int(2)], [.int(3), .int(4)], [.int(5), .int(6)]])
        #expect(try parse("a,b\n").rows.isEmpty)
        #expect(try parse("a,b\n,\n").rows == [[.null, .null]])
        #expect(try parse("a,\"b\"\"\"\n\"\",x").fields == ["a", "b\""])
    }

    // Found by scripts/fuzz.sh dataproc: inferred types renamed header fields (`.5` became `0.5`,
    // so `01,1` was a duplicate name) and made the two typings disagree on the header.
    @Test func headerNamesAreTakenAsWritten() throws {
        let text = "01,1,.5,true,1e3,+7\n1,2,3,4,5,6\n"
        #expect(try parse(text).fields == ["01", "1", ".5", "true", "1e3", "+7"])
        #expect(try parse(text, .strings).fields == ["01", "1", ".5", "true", "1e3", "+7"])
        #expect(try parse(text).rows == [[.int(1), .int(2), .int(3), .int(4), .int(5), .int(6)]])
        do throws(TransformError) { _ = try parse(",a\n1,2\n"); Issue.record("an empty header name was taken") } catch {
            #expect(error.status == 422)
        }
    }

    @Test func malformedFilesAreRefused() {
        func status(_ text: String) -> Int? {
            do throws(TransformError) { _ = try parse(text); return nil } catch { return error.status }
        }
        #expect(status("a,b\n\"open,1\n") == 400)
        #expect(status("a,b\nx\"y,1\n") == 400)
        #expect(status("a,b\n\"x\"y,1\n") == 400)
        #expect(status("a,b\n1,2,3\n") == 422)
        #expect(status("a,a\n1,2\n") == 422)
        #expect(status("a,,c\n1,2,3\n") == 422)
        #expect(status("") == 400)
        do throws(TransformError) { _ = try parse("a,b\n1,2\n3\n") } catch { #expect(error.message.contains("line 3")) }
    }
}

@Suite struct TimestampNormalisation {
    @Test(arguments: [
        ("2026-11-23T17:02:14.123Z", "2026-11-23T17:02:14.123Z"),
        ("2026-11-23T17:02:14Z", "2026-11-23T17:02:14.000Z"),
        ("2026-11-23T17:02:14.123456789Z", "2026-11-23T17:02:14.123Z"),
        ("2026-11-23T17:02:14.5", "2026-11-23T17:02:14.500Z"),
        ("2026-11-23 17:02:14", "2026-11-23T17:02:14.000Z"),
        ("2026-11-23T18:02:14+01:00", "2026-11-23T17:02:14.000Z"),
        ("2026-11-23T12:02:14-0500", "2026-11-23T17:02:14.000Z"),
        ("2026-11-24T02:02+09", "2026-11-23T17:02:00.000Z"),
        ("2026-11-23", "2026-11-23T00:00:00.000Z"),
        ("  2024-02-29T23:59:59,999z ", "2024-02-29T23:59:59.999Z"),
        ("1700000000", "2023-11-14T22:13:20.000Z"),
        ("1700000000123", "2023-11-14T22:13:20.123Z"),
        ("1700000000.5", "2023-11-14T22:13:20.500Z"),
        ("0", "1970-01-01T00:00:00.000Z"),
        ("-86400", "1969-12-31T00:00:00.000Z"),
        ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
    ])
    func parsesCommonForms(_ input: String, _ expected: String) {
        #expect(DatasetTime.normalized(.string(input)) == expected)
    }

    @Test func numbersAreEpochSecondsOrMilliseconds() {
        #expect(DatasetTime.normalized(.int(1_700_000_000)) == "2023-11-14T22:13:20.000Z")
        #expect(DatasetTime.normalized(.int(1_700_000_000_123)) == "2023-11-14T22:13:20.123Z")
        #expect(DatasetTime.normalized(.double(1_700_000_000.25)) == "2023-11-14T22:13:20.250Z")
    }

    @Test(arguments: ["", "yesterday", "2026-13-01", "2026-02-29", "2026-11-31T00:00:00Z", "2026-11-23T24:00:00Z",
                      "2026-11-23T17:60", "2026-11-23X17:02", "2026-11-23T17:02:14+25:00", "2026-11-23T17:02:14Zjunk",
                      "26-11-23", "1e5", "2026-11-23T17:02:14.Z", "10000-01-01"])
    func refusesWhatIsNotATimestamp(_ input: String) {
        #expect(DatasetTime.normalized(.string(input)) == nil)
    }

    @Test func calendarRoundTrip() {
        var g = SeededGenerator(seed: 9)
        for _ in 0..<2000 {
            let ms = Int64.random(in: DatasetTime.minMilliseconds...DatasetTime.maxMilliseconds, using: &g)
            guard let text = DatasetTime.format(ms) else { Issue.record("no format for \(ms)"); continue }
            #expect(DatasetTime.parse(text) == ms, "\(text)")
        }
        #expect(DatasetTime.weekday(0) == "thursday")
        #expect(DatasetTime.weekday(-1) == "wednesday")
        #expect(DatasetTime.hourOfDay(-1) == 23)
    }
}

@Suite struct JSONDatasetParsing {
    /// The dataset and where the reader stopped (the parallel reader runs at any size here).
    func read(_ text: String, workers: Int, maxRecords: Int = .max, trailing: Bool = false,
              expectParallel: Bool = false) -> Result<Dataset, TransformError> {
        Array(text.utf8).withUnsafeBufferPointer { b in
            var reader = DatasetReader(b)
            do throws(TransformError) {
                let d = try reader.readRecordsParallel(maxRecords: maxRecords, what: "data", workers: workers, minimumBytes: 0)
                if expectParallel { #expect(reader.parallelPieces > 1, "read sequentially") }
                if trailing {
                    // What follows the array: a comma and another array of objects.
                    try reader.expect(UInt8(ascii: ","), "','")
                    _ = try reader.readValue(depth: 0)
                }
                try reader.expectEnd()
                return .success(d)
            } catch {
                return .failure(error)
            }
        }
    }

    /// Objects with varying key sets and orders, and strings full of brackets, commas, quotes and escapes.
    func randomArray(_ count: Int, seed: UInt64) -> String {
        var g = SeededGenerator(seed: seed)
        let tricky = [#"a,b"#, #"}],{["#, #"q\"uote"#, #"back\\slash\\"#, #"\u00e9\n"#, "plain", ""]
        var parts: [String] = []
        for i in 0..<count {
            var members = [#""id":\#(i)"#]
            if Int.random(in: 0..<3, using: &g) > 0 { members.append(#""s":"\#(tricky[Int.random(in: 0..<tricky.count, using: &g)])""#) }
            if Int.random(in: 0..<50, using: &g) == 0 { members.append(#""late\#(Int.random(in: 0..<3, using: &g))":true"#) }
            if Int.random(in: 0..<4, using: &g) == 0 { members.append(#""x":\#(Double(Int.random(in: -9999...9999, using: &g)) / 100)"#) }
            if Int.random(in: 0..<4, using: &g) == 0 { members.append(#""n":null"#) }
            members.shuffle(using: &g)
            parts.append("{" + members.joined(separator: Int.random(in: 0..<2, using: &g) == 0 ? "," : " , ") + "}")
        }
        return "[ " + parts.joined(separator: ",\n") + " ]"
    }

    @Test func parallelReadEqualsSequential() {
        for seed: UInt64 in [1, 2] {
            let text = randomArray(6000, seed: seed)
            let sequential = read(text, workers: 1)
            guard case .success(let d) = sequential else { Issue.record("\(sequential)"); return }
            #expect(d.count == 6000)
            #expect(Set(d.fields) == ["id", "s", "x", "n", "late0", "late1", "late2"])
            for workers in [2, 3, 8] { #expect(read(text, workers: workers, expectParallel: true) == sequential) }
            // Guessed boundaries that fall after the array (in what follows it) are ignored.
            let followed = text + ", " + randomArray(3000, seed: seed + 10)
            let sequentialFollowed = read(followed, workers: 1, trailing: true)
            #expect(sequentialFollowed == sequential)
            for workers in [2, 5] { #expect(read(followed, workers: workers, trailing: true, expectParallel: true) == sequential) }
        }
    }

    @Test func parallelReadFailsLikeSequential() {
        let text = randomArray(5000, seed: 3)
        let broken = [
            text.replacing(#""id":4000"#, with: #""id":4000,"bad":[1]"#),
            text.replacing(#""id":4500"#, with: #""id":4500},7,{"z":1"#),
            String(text.dropLast(3)),
            text.replacing(#""id":4200"#, with: #""id":4200,,"#),
        ]
        for b in broken {
            let sequential = read(b, workers: 1)
            if case .success = sequential { Issue.record("should fail") }
            #expect(read(b, workers: 4) == sequential)
        }
        #expect(read(text, workers: 4, maxRecords: 4999) == read(text, workers: 1, maxRecords: 4999))
        #expect(read("[]", workers: 4) == .success(Dataset(fields: [], rows: [])))
    }
}
