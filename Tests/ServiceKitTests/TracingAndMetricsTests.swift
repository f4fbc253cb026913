import Testing
@testable import ServiceKit

@Suite struct TraceContextTests {
    @Test func parsesAValidVersion00Header() throws {
        let ctx = try #require(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(ctx.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(ctx.spanID == "00f067aa0ba902b7")
        #expect(ctx.flags == 1)
        #expect(ctx.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    }

    @Test(arguments: [
        "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",           // too short
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",             // upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",             // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",             // zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",             // forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",       // v00 with extra
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    ])
    func rejectsInvalidHeaders(value: String) {
        #expect(TraceContext(traceparent: value) == nil)
    }

    @Test func acceptsFutureVersionsWithExtraFields() {
        #expect(TraceContext(traceparent: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever")?.spanID == "00f067aa0ba902b7")
        #expect(TraceContext(traceparent: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x") == nil)
    }

    @Test func childKeepsTheTraceAndGetsANewSpan() throws {
        let parent = try #require(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
        let child = parent.child()
        #expect(child.traceID == parent.traceID && child.flags == 0)
        #expect(child.spanID != parent.spanID)
        #expect(TraceContext(traceparent: child.traceparent) == child)
    }

    @Test func newTracesAreValidAndDistinct() {
        let a = TraceContext.newTrace(), b = TraceContext.continuing("garbage")
        #expect(TraceContext(traceparent: a.traceparent) == a)
        #expect(a.traceID != b.traceID)
        #expect(TraceContext.continuing(a.traceparent) == a)
    }

    @Test func randomIdsAreLowercaseHexOfTheRightLengthAndSpreadOverEveryDigit() {
        var seen = Set<Character>()
        var ids = Set<String>()
        for _ in 0..<2000 {
            let trace = TraceContext.newTrace()
            #expect(trace.traceID.count == 32 && trace.spanID.count == 16)
            #expect(trace.traceID.allSatisfy { $0.isHexDigit && !$0.isUppercase })
            #expect(trace.traceID != String(repeating: "0", count: 32))
            seen.formUnion(trace.traceID)
            ids.insert(trace.traceID)
            ids.insert(trace.child().spanID)
        }
        #expect(seen.count == 16)
        #expect(ids.count == 4000)
    }
}

@Suite struct MetricsTests {
    @Test func aResolvedSampleUpdatesTheSameSeriesAsTheLabelledCall() {
        let m = MetricsRegistry()
        m.declareCounter("handled_total", help: "handled")
        let sample = m.sample("handled_total", labels: [("consumer", "a\"b")])
        m.increment(sample)
        m.increment(sample, by: 2)
        m.increment("handled_total", labels: [("consumer", "a\"b")])
        #expect(m.value("handled_total", labels: [("consumer", "a\"b")]) == 4)
        #expect(m.render().contains(#"handled_total{consumer="a\"b"} 4"#))
    }

    @Test func rendersCountersAndGaugesInPrometheusTextFormat() {
        let m = MetricsRegistry()
        m.declareCounter("http_requests_total", help: "HTTP requests by route and status")
        m.increment("http_requests_total", labels: [("route", "/v1/users"), ("status", "201")])
        m.increment("http_requests_total", labels: [("route", "/v1/users"), ("status", "201")])
        m.increment("http_requests_total", labels: [("route", "/v1/login"), ("status", "401")], by: 3)
        m.declareGauge("nats_connected", help: "1 when connected")
        m.set("nats_connected", to: 1)
        #expect(m.render() == """
            # HELP http_requests_total HTTP requests by route and status
            # TYPE http_requests_total counter
            http_requests_total{route="/v1/login",status="401"} 3
            http_requests_total{route="/v1/users",status="201"} 2
            # HELP nats_connected 1 when connected
            # TYPE nats_connected gauge
            nats_connected 1

            """)
        #expect(m.value("http_requests_total", labels: [("route", "/v1/users"), ("status", "201")]) == 2)
    }

    @Test func histogramBucketsAreCumulativeWithSumAndCount() {
        let m = MetricsRegistry()
        m.declareHistogram("latency_seconds", help: "latency", buckets: [0.1, 1])
        for v in [0.05, 0.1, 0.5, 3.0] { m.observe("latency_seconds", labels: [("route", "/x")], v) }
        #expect(m.render() == """
            # HELP latency_seconds latency
            # TYPE latency_seconds histogram
            latency_seconds_bucket{route="/x",le="0.1"} 2
            latency_seconds_bucket{route="/x",le="1"} 3
            latency_seconds_bucket{route="/x",le="+Inf"} 4
            latency_seconds_sum{route="/x"} 3.65
            latency_seconds_count{route="/x"} 4

            """)
        #expect(m.observationCount("latency_seconds", labels: [("route", "/x")]) == 4)
    }

    @Test func labelValuesAreEscaped() {
        let m = MetricsRegistry()
        m.increment("c", labels: [("v", "a\"b\\c\nd")])
        #expect(m.render().contains(#"c{v="a\"b\\c\nd"} 1"#))
    }

    @Test func concurrentIncrementsAreAllCounted() async {
        let m = MetricsRegistry()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { for _ in 0..<1000 { m.increment("n") } } }
        }
        #expect(m.value("n") == 8000)
    }
}
