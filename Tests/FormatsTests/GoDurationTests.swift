// Go's Duration.String and ParseDuration, as nats-server's logs, /connz rtt, config and status texts use them.

import Formats
import Testing

@Suite struct GoDurationTests {
    @Test func stringIsGosDurationString() {
        #expect(GoDuration.string(0) == "0s")
        #expect(GoDuration.string(500) == "500ns")
        #expect(GoDuration.string(1_500) == "1.5µs")
        #expect(GoDuration.string(1_500_000) == "1.5ms")
        #expect(GoDuration.string(100_000_000) == "100ms")
        #expect(GoDuration.string(2_000_000_000) == "2s")
        #expect(GoDuration.string(1_500_000_000) == "1.5s")
        #expect(GoDuration.string(90_000_000_000) == "1m30s")
        #expect(GoDuration.string(3_600_000_000_000) == "1h0m0s")
        #expect(GoDuration.string(-2_000_000_000) == "-2s")
    }

    @Test func parseIsGosParseDuration() {
        #expect(GoDuration.parse("0") == 0)
        #expect(GoDuration.parse("5s") == 5_000_000_000)
        #expect(GoDuration.parse("1m30s") == 90_000_000_000)
        #expect(GoDuration.parse("250ms") == 250_000_000)
        #expect(GoDuration.parse("1.5h") == 5_400_000_000_000)
        #expect(GoDuration.parse("-1us") == -1_000)
        #expect(GoDuration.parse("x") == nil)
        #expect(GoDuration.parse("5") == nil)
        #expect(GoDuration.parse("") == nil)
        #expect(GoDuration.parse("3000000h") == nil)
    }
}
