import Testing
import Formats

@Suite struct RFC3339Tests {
    private func seconds(_ s: String, _ leniency: RFC3339.Leniency = []) -> Int64? { RFC3339.parse(s, leniency)?.seconds }

    @Test func parsesFractionsToTheNanosecondAndTruncatesBeyond() {
        #expect(RFC3339.parse("2026-11-23T17:02:14Z") == UnixTime(seconds: 1_795_453_334))
        #expect(RFC3339.parse("2026-11-23T17:02:14.5Z") == UnixTime(seconds: 1_795_453_334, nanoseconds: 500_000_000))
        #expect(RFC3339.parse("2026-11-23T17:02:14.123456789Z")?.nanoseconds == 123_456_789)
        #expect(RFC3339.parse("2026-11-23T17:02:14.1234567899999Z")?.nanoseconds == 123_456_789)
        #expect(RFC3339.parse("2026-11-23T17:02:14.123Z")?.milliseconds == 1_795_453_334_123)
        #expect(RFC3339.parse("2026-11-23T17:02:14.Z") == nil)
    }

    @Test func offsetsMoveTheInstant() {
        let utc = seconds("2026-11-23T17:02:14Z")
        #expect(seconds("2026-11-23T18:02:14+01:00") == utc)
        #expect(seconds("2026-11-23T12:32:14-04:30") == utc)
        #expect(seconds("2026-11-24T16:61:14+23:59") == nil)
        #expect(seconds("2026-11-23t17:02:14z") == utc)
        #expect(seconds("2026-11-23 17:02:14Z") == utc)
        #expect(seconds("2026-11-23T17:02:14+24:00") == nil)
        #expect(seconds("2026-11-23T17:02:14+01") == nil)
        #expect(seconds("2026-11-23T17:02:14+0100") == nil)
        #expect(seconds("2026-11-23T17:02:14") == nil)
    }

    @Test func leapYearsAndMonthLengths() {
        #expect(seconds("2024-02-29T00:00:00Z") != nil)
        #expect(seconds("2000-02-29T00:00:00Z") != nil)
        #expect(seconds("1900-02-29T00:00:00Z") == nil)
        #expect(seconds("2023-02-29T00:00:00Z") == nil)
        #expect(seconds("2026-04-31T00:00:00Z") == nil)
        #expect(seconds("2026-13-01T00:00:00Z") == nil)
        #expect(seconds("2026-00-01T00:00:00Z") == nil)
        #expect(seconds("2026-01-00T00:00:00Z") == nil)
        #expect(seconds("2026-01-01T24:00:00Z") == nil)
        #expect(seconds("2026-01-01T23:60:00Z") == nil)
        #expect(seconds("2024-03-01T00:00:00Z")! - seconds("2024-02-28T00:00:00Z")! == 2 * 86_400)
    }

    @Test func aLeapSecondCountsAsTheNextMinute() {
        #expect(seconds("2016-12-31T23:59:60Z") == seconds("2017-01-01T00:00:00Z"))
        #expect(seconds("2016-12-31T23:59:61Z") == nil)
    }

    @Test func beforeTheEpochAndAtTheEndsOfTheYearRange() {
        #expect(RFC3339.parse("1969-12-31T23:59:59.25Z") == UnixTime(seconds: -1, nanoseconds: 250_000_000))
        #expect(RFC3339.parse("1969-12-31T23:59:59.25Z")?.milliseconds == -750)
        #expect(seconds("0001-01-01T00:00:00Z") == -62_135_596_800)
        #expect(seconds("9999-12-31T23:59:59Z") == 253_402_300_799)
        #expect(seconds("10000-01-01T00:00:00Z") == nil)
        #expect(seconds("99-01-01T00:00:00Z") == nil)
    }

    @Test func malformedTextIsRejected() {
        for text in ["", "2026", "2026-11-23", "2026-11-23T", "2026-11-23T17:02Z", "2026-11-23T17:02:14Zx",
                     "2026-1-23T17:02:14Z", "2026-11-23X17:02:14Z", " 2026-11-23T17:02:14Z", "2026-11-23T17:02:1aZ",
                     "2026-11-23T17:02:14,5Z", "２０２６-11-23T17:02:14Z"] {
            #expect(RFC3339.parse(text) == nil, "\(text)")
        }
    }

    @Test func iso8601LeniencyAcceptsTheFormsPeopleType() {
        let utc = seconds("2026-11-23T17:02:00Z")
        #expect(seconds("2026-11-23", .iso8601) == seconds("2026-11-23T00:00:00Z"))
        #expect(seconds("2026-11-23T17:02", .iso8601) == utc)
        #expect(seconds("2026-11-23 17:02:00", .iso8601) == utc)
        #expect(seconds("2026-11-23T18:02+0100", .iso8601) == utc)
        #expect(seconds("2026-11-23T18:02+01", .iso8601) == utc)
        #expect(RFC3339.parse("2026-11-23T17:02:00,25", .iso8601)?.nanoseconds == 250_000_000)
        #expect(seconds("2026-11-23T", .iso8601) == nil)
        #expect(seconds("2026-11-23", .optionalZone) == nil)
    }

    @Test func formatsWithTheAskedFractionDigits() {
        let t = UnixTime(seconds: 1_795_453_334, nanoseconds: 123_456_789)
        #expect(RFC3339.format(t, fractionDigits: 0) == "2026-11-23T17:02:14Z")
        #expect(RFC3339.format(t, fractionDigits: 3) == "2026-11-23T17:02:14.123Z")
        #expect(RFC3339.format(t, fractionDigits: 6) == "2026-11-23T17:02:14.123456Z")
        #expect(RFC3339.format(t, fractionDigits: 9) == "2026-11-23T17:02:14.123456789Z")
        #expect(RFC3339.format(UnixTime(milliseconds: -1), fractionDigits: 3) == "1969-12-31T23:59:59.999Z")
        #expect(RFC3339.format(UnixTime(seconds: -62_135_596_800), fractionDigits: 0) == "0001-01-01T00:00:00Z")
        #expect(RFC3339.format(UnixTime(seconds: 253_402_300_800), fractionDigits: 0) == "10000-01-01T00:00:00Z")
    }

    @Test func microsecondsAtTheEpochALeapDayAndBeforeTheEpoch() {
        #expect(RFC3339.format(UnixTime(seconds: 0), fractionDigits: 6) == "1970-01-01T00:00:00.000000Z")
        #expect(RFC3339.format(UnixTime(seconds: 951_782_400, nanoseconds: 5_000), fractionDigits: 6) == "2000-02-29T00:00:00.000005Z")
        #expect(RFC3339.format(UnixTime(seconds: 4_102_444_799, nanoseconds: 999_999_999), fractionDigits: 6)
            == "2099-12-31T23:59:59.999999Z")
        #expect(RFC3339.format(UnixTime(seconds: -1), fractionDigits: 6) == "1969-12-31T23:59:59.000000Z")
    }

    @Test func formattedTimesParseBackToTheSameInstant() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<5000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let seconds = Int64(state >> 20) % 253_402_300_799 - 62_135_596_800 / 2
            let t = UnixTime(seconds: seconds, nanoseconds: Int32(truncatingIfNeeded: state % 1_000_000_000))
            #expect(RFC3339.parse(RFC3339.format(t, fractionDigits: 9)) == t)
        }
    }
}
