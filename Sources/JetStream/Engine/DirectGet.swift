/// `$JS.API.DIRECT.GET.<stream>` (a JSON request) and `$JS.API.DIRECT.GET.<stream>.<subject>` (the
/// last message of that subject, no body), for streams with allow_direct: the stored message
/// itself, with Nats-Stream, Nats-Subject, Nats-Sequence and Nats-Time-Stamp headers, or a
/// header-only status reply. 2.9.10 serves these outside its API accounting, and without a reply
/// subject it does nothing.
extension JetStreamEngine {
    func directGet(_ message: InboundMessage, stream: EngineStream, subjectTokens: [Substring]) -> [EngineAction] {
        let reply = message.reply
        guard !reply.isEmpty else { return [] }
        func status(_ text: String) -> [EngineAction] {
            [.reply(reply, [], headers: Array("NATS/1.0 \(text)\r\n\r\n".utf8))]
        }
        var request = MessageGetRequest()
        if subjectTokens.count > 5 {
            guard message.payload.isEmpty else { return status("408 Bad Request") }
            request.lastBySubject = subjectTokens[5...].joined(separator: ".")
            if request.lastBySubject.isEmpty { return status("408 Bad Request") }
        } else {
            if message.payload.isEmpty { return status("408 Empty Request") }
            do { request = try MessageGetRequest(message.payload) } catch { return status("408 Malformed Request") }
            if request.sequence == 0 && request.lastBySubject.isEmpty && request.nextBySubject.isEmpty {
                return status("408 Empty Request")
            }
            if !request.isValid { return status("408 Bad Request") }
        }
        guard let stored = try? request.load(from: stream.store) else { return status("404 Message Not Found") }
        var time: [UInt8] = []
        JetStreamJSON.appendTime(stored.timestamp, to: &time)
        let stamp = String(decoding: time.dropFirst().dropLast(), as: UTF8.self)
        var block = HeaderBlock.appending("Nats-Stream", stream.name, to: stored.headers)
        block = HeaderBlock.appending("Nats-Subject", stored.subject, to: block)
        block = HeaderBlock.appending("Nats-Sequence", String(stored.sequence), to: block)
        block = HeaderBlock.appending("Nats-Time-Stamp", stamp, to: block)
        return [.send(subject: reply, displaySubject: nil, reply: "", headers: block, payload: stored.payload)]
    }
}
