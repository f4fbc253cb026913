// TEMPORARY: stands in for NATSProtocol.ServerParser (contract in ARCHITECTURE.md) until it lands.
// Same API; this file is deleted then.

protocol ServerOpHandler {
    mutating func info(json: UnsafeRawBufferPointer) -> Bool
    mutating func msg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                      payload: UnsafeRawBufferPointer) -> Bool
    mutating func hmsg(subject: UnsafeRawBufferPointer, sid: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer,
                       headers: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool
    mutating func ping() -> Bool
    mutating func pong() -> Bool
    mutating func ok() -> Bool
    mutating func err(message: UnsafeRawBufferPointer) -> Bool
}

enum ServerParseError: Error, Equatable { case unknownOperation, controlLineTooLong, badArguments }
enum ServerParseResult: Equatable { case ok, stopped, error(ServerParseError) }

struct ServerParser {
    var pending: [UInt8] = []
    let maxControlLine: Int
    init(maxControlLine: Int = 4096 * 16) { self.maxControlLine = maxControlLine }

    mutating func parse<H: ServerOpHandler>(_ bytes: UnsafeRawBufferPointer, into handler: inout H) -> ServerParseResult {
        pending.append(contentsOf: bytes)
        var consumed = 0
        defer { pending.removeFirst(consumed) }
        return pending.withUnsafeBytes { buf -> ServerParseResult in
            while true {
                guard let lf = buf[consumed...].firstIndex(of: 0x0A) else {
                    return buf.count - consumed > maxControlLine ? .error(.controlLineTooLong) : .ok
                }
                var lineEnd = lf
                if lineEnd > consumed && buf[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                let line = UnsafeRawBufferPointer(rebasing: buf[consumed..<lineEnd])
                var args: [UnsafeRawBufferPointer] = []
                var start = -1
                for i in 0...line.count {
                    let sep = i == line.count || line[i] == 0x20 || line[i] == 0x09
                    if sep { if start >= 0 { args.append(UnsafeRawBufferPointer(rebasing: line[start..<i])); start = -1 } }
                    else if start < 0 { start = i }
                    if args.count == 1 && start < 0 && !sep { break }
                }
                guard let op = args.first else { consumed = lf + 1; continue }
                let verb = String(decoding: op, as: UTF8.self).uppercased()
                let after = lf + 1
                switch verb {
                case "PING": consumed = after; if !handler.ping() { return .stopped }
                case "PONG": consumed = after; if !handler.pong() { return .stopped }
                case "+OK": consumed = after; if !handler.ok() { return .stopped }
                case "INFO":
                    let rest = UnsafeRawBufferPointer(rebasing: line[(op.count + 1)...])
                    consumed = after; if !handler.info(json: rest) { return .stopped }
                case "-ERR":
                    var rest = UnsafeRawBufferPointer(rebasing: line[min(op.count + 1, line.count)...])
                    while let f = rest.first, f == 0x20 { rest = UnsafeRawBufferPointer(rebasing: rest[1...]) }
                    if rest.count >= 2 && rest.first == 0x27 && rest.last == 0x27 { rest = UnsafeRawBufferPointer(rebasing: rest[1..<(rest.count - 1)]) }
                    consumed = after; if !handler.err(message: rest) { return .stopped }
                case "MSG", "HMSG":
                    let hasHeaders = verb == "HMSG"
                    let n = args.count - 1
                    guard n >= (hasHeaders ? 4 : 3), n <= (hasHeaders ? 5 : 4) else { return .error(.badArguments) }
                    guard let total = parseDecimal(args[args.count - 1]) else { return .error(.badArguments) }
                    let hdr = hasHeaders ? (parseDecimal(args[args.count - 2]) ?? UInt64.max) : 0
                    guard hdr <= total else { return .error(.badArguments) }
                    let reply = n == (hasHeaders ? 5 : 4) ? args[3] : UnsafeRawBufferPointer(start: nil, count: 0)
                    guard buf.count - after >= Int(total) + 2 else { return .ok }
                    let hdrs = UnsafeRawBufferPointer(rebasing: buf[after..<(after + Int(hdr))])
                    let payload = UnsafeRawBufferPointer(rebasing: buf[(after + Int(hdr))..<(after + Int(total))])
                    consumed = after + Int(total) + 2
                    let ok = hasHeaders
                        ? handler.hmsg(subject: args[1], sid: args[2], reply: reply, headers: hdrs, payload: payload)
                        : handler.msg(subject: args[1], sid: args[2], reply: reply, payload: payload)
                    if !ok { return .stopped }
                default:
                    return .error(.unknownOperation)
                }
            }
        }
    }
}
