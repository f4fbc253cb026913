// libFuzzer target for the broker's monitoring arguments: the request target's query string
// (HTTPServer's URLDecoding, as the router splits it) and what /connz, /subsz, /accountz and /jsz
// make of it (ConnzQuery and the Broker's document builders). Built by scripts/fuzz.sh (target
// monitor) over the NATSServer module and its dependencies, compiled with -enable-testing to reach
// their internals. A broker runs in the process on 127.0.0.1 (a port the kernel picks, no
// monitoring port: the documents are built by direct calls), with three client connections holding
// subscriptions and one closed connection, so offsets and limits have something to page through.
// The input is the request target (`/connz?sort=cid&limit=2`); every endpoint gets its query.
//
// Oracle: nothing crashes; the query items, percent-encoded again, parse back to the same items;
// each endpoint answers a JSON object or a MonitorArgumentError with a message; /connz and /subsz
// echo the offset and limit they used and list no more entries than the limit.

import Formats
import Glibc
@testable import HTTPServer
@testable import NATSServer

/// Stops the run with `message` when `condition` is false (unlike `precondition`, an -O build
/// still prints the message, so the report says which property failed).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

/// Connects a raw client that sends `commands` and waits for the PONG that ends them.
private func client(port: Int, _ commands: String) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    require(fd >= 0, "socket: \(errno)")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    require(connected == 0, "connect to 127.0.0.1:\(port): \(errno)")
    let bytes = Array((commands + "PING\r\n").utf8)
    require(write(fd, bytes, bytes.count) == bytes.count, "write: \(errno)")
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while !String(decoding: received, as: UTF8.self).contains("PONG\r\n") {
        let n = read(fd, &buffer, buffer.count)
        require(n > 0, "the broker closed a fuzz client: \(String(decoding: received, as: UTF8.self))")
        received += buffer[0..<n]
    }
    return fd
}

private struct Fixture: @unchecked Sendable {
    let server: Server
    let broker: Broker
    let clients: [Int32]
}

private let fixture: Fixture = {
    var options = Options()
    options.host = "127.0.0.1"
    options.port = -1
    options.noLog = true
    options.eventLoopCount = 1
    let server = Server(options: options)
    do {
        try server.start()
    } catch {
        fatalError("the broker does not start: \(error)")
    }
    guard let broker = server.runningBroker else { fatalError("no running broker") }
    let clients = [
        client(port: server.port, "CONNECT {\"name\":\"one\"}\r\nSUB foo 1\r\nSUB bar.* q 2\r\n"),
        client(port: server.port, "CONNECT {\"name\":\"two\",\"lang\":\"go\"}\r\nSUB foo.> 1\r\nPUB foo 2\r\nhi\r\n"),
        client(port: server.port, "CONNECT {}\r\nSUB > 9\r\n"),
    ]
    close(client(port: server.port, "CONNECT {\"name\":\"closed\"}\r\n"))
    return Fixture(server: server, broker: broker, clients: clients)
}()

/// `s` with every byte but the unreserved ones (RFC 3986) percent-encoded.
private func percentEncoded(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        default:
            let hex = Array("0123456789ABCDEF".utf8)
            out += "%" + String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
        }
    }
    return out
}

/// The document `build` answers, checked to be a JSON object; nil for an argument error.
private func document(_ endpoint: String, _ build: () throws(MonitorArgumentError) -> String) -> JSON? {
    let text: String
    do {
        text = try build()
    } catch {
        require(!error.message.isEmpty, "\(endpoint): an argument error without a message")
        return nil
    }
    guard let json = try? JSON.parse(text), json.members != nil else {
        fatalError("\(endpoint) answered something other than a JSON object: \(text)")
    }
    return json
}

/// Checks that a paged document echoes `offset` and `limit` and lists at most `limit` entries.
private func checkPage(_ endpoint: String, _ json: JSON, list: String, offset: Int, limit: Int) {
    require(json["offset"]?.intValue == Int64(offset), "\(endpoint): offset \(String(describing: json["offset"])), asked \(offset)")
    require(json["limit"]?.intValue == Int64(limit), "\(endpoint): limit \(String(describing: json["limit"])), asked \(limit)")
    let listed = json[list]?.elements?.count ?? 0
    require(listed <= limit, "\(endpoint): \(listed) entries listed with limit \(limit)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMonitor(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let target = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let (_, query) = URLDecoding.splitTarget(target)
    let again = query.items.map { percentEncoded($0.name) + "=" + percentEncoded($0.value) }.joined(separator: "&")
    let (_, reparsed) = URLDecoding.splitTarget("/?" + again)
    require(reparsed == query, "query items do not survive percent-encoding: \(query.items) vs \(reparsed.items)")

    let broker = fixture.broker
    if let connz = try? ConnzQuery(query) {
        require(connz.offset >= 0 && connz.limit > 0, "connz: offset \(connz.offset), limit \(connz.limit)")
        guard let json = document("/connz", { () throws(MonitorArgumentError) in broker.connzJSON(connz) }) else {
            fatalError("/connz: connzJSON cannot throw")
        }
        checkPage("/connz", json, list: "connections", offset: connz.offset, limit: connz.limit)
    }
    if let json = document("/subsz", { () throws(MonitorArgumentError) in try broker.subszJSON(query) }),
       let offset = json["offset"]?.intValue, let limit = json["limit"]?.intValue {
        checkPage("/subsz", json, list: "subscriptions_list", offset: Int(offset), limit: Int(limit))
    }
    _ = document("/accountz", { () throws(MonitorArgumentError) in try broker.accountzJSON(query) })
    _ = document("/jsz", { () throws(MonitorArgumentError) in try broker.jszJSON(query) })
    return 0
}
