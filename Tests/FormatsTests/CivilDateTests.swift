import Testing
import Formats

@Suite struct CivilDateTests {
    @Test func knownDatesAndTheirDayCounts() {
        #expect(CivilDate.days(year: 1970, month: 1, day: 1) == 0)
        #expect(CivilDate.days(year: 1969, month: 12, day: 31) == -1)
        #expect(CivilDate.days(year: 2000, month: 2, day: 29) == 11_016)
        #expect(CivilDate.days(year: 2026, month: 11, day: 23) == 20_780)
        #expect(CivilDate.date(days: 20_780) == (2026, 11, 23))
        #expect(CivilDate.date(days: -719_162) == (1, 1, 1))
    }

    /// Every day from year 1 to 2400 round-trips, and consecutive day counts walk the calendar one
    /// day at a time (month lengths and leap years included).
    @Test func everyDayRoundTripsAndTheCalendarAdvancesOneDayAtATime() {
        var (year, month, day): (Int64, Int64, Int64) = (1, 1, 1)
        for days in CivilDate.days(year: 1, month: 1, day: 1)...CivilDate.days(year: 2400, month: 12, day: 31) {
            let date = CivilDate.date(days: days)
            guard date == (year, month, day), CivilDate.days(year: year, month: month, day: day) == days else {
                Issue.record("day \(days): \(date) vs expected \((year, month, day))")
                return
            }
            day += 1
            if day > CivilDate.daysInMonth(year: year, month: month) { day = 1; month += 1 }
            if month > 12 { month = 1; year += 1 }
        }
    }

    @Test func leapYears() {
        #expect(CivilDate.isLeap(2024) && CivilDate.isLeap(2000) && CivilDate.isLeap(2400))
        #expect(!CivilDate.isLeap(1900) && !CivilDate.isLeap(2026) && !CivilDate.isLeap(2100))
        #expect(CivilDate.daysInMonth(year: 2024, month: 2) == 29 && CivilDate.daysInMonth(year: 2100, month: 2) == 28)
    }
}
