// Paging arguments at the edge of Int (found by scripts/fuzz.sh monitor): offset + limit used to
// overflow and stop the broker; the page now runs to the end of the list.

import Testing
@testable import NATSServer

@Suite("Monitoring paging limits")
struct MonitoringPagingTests {
    @Test func connzAndSubszTakeTheLargestLimitWithAnOffset() async throws {
        let (broker, port) = try MonitoringEndpointTests.monitored()
        var clients: [RawClient] = []
        for sid in 1...3 {
            let client = try broker.connected()
            try client.send("SUB paging.\(sid) \(sid)\r\n")
            try client.sync()
            clients.append(client)
        }
        let connz = try await MonitoringEndpointTests.json(port, "/connz?offset=1&limit=\(Int.max)")
        #expect(connz["total"] as? Int == 3)
        #expect(connz["offset"] as? Int == 1)
        #expect(connz["limit"] as? Int == Int.max)
        #expect(MonitoringEndpointTests.connections(connz).count == 2)

        let subsz = try await MonitoringEndpointTests.json(port, "/subsz?subs=1&offset=2&limit=\(Int.max)")
        #expect(subsz["total"] as? Int == 3)
        #expect((subsz["subscriptions_list"] as? [Any])?.count == 1)
        #expect(subsz["limit"] as? Int == Int.max)

        // The broker is still there.
        let after = try await MonitoringEndpointTests.json(port, "/connz")
        #expect(after["num_connections"] as? Int == 3)
        _ = clients
    }
}
