// libFuzzer target for the JetStream API's request decoders and the small files the engine reads
// back: built by scripts/fuzz.sh over the JetStream module (built with -enable-testing, so the
// target reaches its internals). The first input byte picks the decoder, the rest is the request
// body (or file, or subject). Every decoder must return or throw its typed error, never crash; a
// decoded StreamConfig must survive validation, and the JSON it writes must decode back to the
// same config; a consumer state file that decodes must encode to bytes that decode to the same
// state.

import Formats
@testable import JetStream

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@_cdecl("LLVMFuzzerTestOneInput")
public func jetStreamAPIFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 13 {
    case 0:
        // $JS.API.STREAM.CREATE / UPDATE bodies.
        let config: StreamConfig
        do {
            config = try StreamConfig.decode(body)
        } catch {
            precondition(error.code >= 400, "error without an HTTP code: \(error)")
            return 0
        }
        var written: [UInt8] = []
        config.write(to: &written)
        do {
            let reread = try StreamConfig.decode(written)
            precondition(reread == config, "a config does not survive its own JSON: \(text(written))")
        } catch {
            preconditionFailure("the JSON of a decoded config does not decode: \(error): \(text(written))")
        }
        if let valid = try? config.validated() {
            var out: [UInt8] = []
            valid.write(to: &out)
            precondition(!out.isEmpty)
        }
    case 1:
        // $JS.API.CONSUMER.CREATE / DURABLE.CREATE bodies.
        _ = try? ConsumerConfig.decodeRequest(body)
    case 2:
        // $JS.API.CONSUMER.MSG.NEXT bodies.
        _ = try? PullRequestBody.parse(body)
    case 3:
        _ = try? StreamInfoRequest(body)
    case 4:
        _ = try? StreamListRequest(body)
    case 5:
        _ = try? PurgeRequest(body)
    case 6:
        _ = try? MessageGetRequest(body)
    case 7:
        _ = try? MessageDeleteRequest(body)
    case 8:
        // A reply subject taken for an ack: `$JS.ACK.<stream>.<consumer>.<d>.<sseq>.<cseq>.<ts>.<pending>`.
        _ = AckSubject(text(body))
    case 9:
        // A stream's meta.json, read back at start-up.
        _ = try? StreamCatalog.decode(body)
    case 10:
        // A consumer's state file.
        if let state = try? ConsumerStateFile.decode(body, path: "fuzz") {
            let again = ConsumerStateFile.encode(state)
            do {
                let reread = try ConsumerStateFile.decode(again, path: "fuzz")
                precondition(reread == state, "a consumer state does not survive its own encoding")
            } catch {
                preconditionFailure("an encoded consumer state does not decode: \(error)")
            }
        }
    case 11:
        _ = try? ConsumerStateFile.decodeConfig(body, path: "fuzz")
    default:
        // Go duration text (backoff and the like).
        _ = GoDuration.parse(text(body))
    }
    return 0
}
