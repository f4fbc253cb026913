// libFuzzer target for the JetStream API's request decoders: built by scripts/fuzz.sh into the
// JetStream module itself (its dependencies as separate modules). The input is a request body.
// StreamConfig.decode must return or throw a JetStreamAPIError, never crash; a decoded config must
// survive validation without crashing, and the JSON it writes must decode back to the same config.

@_cdecl("LLVMFuzzerTestOneInput")
public func jetStreamAPIFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
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
        precondition(reread == config, "a config does not survive its own JSON: \(String(decoding: written, as: UTF8.self))")
    } catch {
        preconditionFailure("the JSON of a decoded config does not decode: \(error): \(String(decoding: written, as: UTF8.self))")
    }
    if let valid = try? config.validated() {
        var out: [UInt8] = []
        valid.write(to: &out)
        precondition(!out.isEmpty)
    }
    return 0
}
