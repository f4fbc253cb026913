// libFuzzer target for Formats' JSON reader and writer: built by scripts/fuzz.sh (target json) over
// the Formats module. The input is the JSON text.
//
// Oracle: parsing returns a value or throws a JSONError whose offset lies within the input, never
// crashes; a value that parses writes JSON that parses back to the same value (a double beyond the
// double range, read as an infinity, comes back as null, the writer's stand-in), and writing that
// value again gives the same bytes.

import Formats

/// Stops the run with `message` when `condition` is false (unlike `precondition`, an -O build
/// still prints the message, so the report says which property failed).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

/// `value` as it should come back from its own JSON: infinities (which JSON cannot express) as null.
private func expectedAfterRoundTrip(_ value: JSON) -> JSON {
    switch value {
    case .double(let d) where !d.isFinite: return .null
    case .array(let elements): return .array(elements.map(expectedAfterRoundTrip))
    case .object(let members): return .object(members.map { JSONMember($0.key, expectedAfterRoundTrip($0.value)) })
    default: return value
    }
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let value: JSON
    do {
        value = try JSON.parse(input)
    } catch {
        require(error.offset >= 0 && error.offset <= size, "error offset \(error.offset) outside the input of \(size) bytes")
        return 0
    }
    let written = value.serialized
    let reread: JSON
    do {
        reread = try JSON.parse(written)
    } catch {
        fatalError("the writer's JSON does not parse: \(error): \(text(written))")
    }
    require(reread == expectedAfterRoundTrip(value), "a value does not survive its own JSON: \(text(written))")
    require(reread.serialized == written, "writing the reread value changed the JSON: \(text(written))")
    return 0
}
