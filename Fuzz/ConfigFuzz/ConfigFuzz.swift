// libFuzzer target for the nats.conf parser (NATSConfig) and the broker's reading of its result
// (Options.apply in NATSServer): built by scripts/fuzz.sh (target config) over those modules. The
// input is the configuration text, parsed with an empty environment; an input that mentions
// `include` is passed over, since an include reads the host's files.
//
// Oracle: parsing and applying return or throw ConfigError, never crash; every error the parser
// throws, and every error apply throws with a location, points into the input (file name as given,
// a line that exists, a column within that line or just past its end); so does every node of a
// configuration that parses.

import NATSConfig
import NATSServer

/// Stops the run with `message` when `condition` is false (unlike `precondition`, an -O build
/// still prints the message, so the report says which property failed).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

private let file = "fuzz.conf"

/// The lengths in bytes of the lines of `text` (separated by `\n`, as the parser counts them).
private func lineLengths(_ text: String) -> [Int] {
    text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(\.count)
}

private func check(_ location: SourceLocation, _ lines: [Int], _ what: String) {
    require(location.file == file, "\(what): file \(location.file) at \(location)")
    require(location.line >= 1 && location.line <= lines.count, "\(what): line outside the input at \(location)")
    require(location.column >= 1 && location.column <= lines[location.line - 1] + 1,
                 "\(what): column outside line \(location.line) (\(lines[location.line - 1]) bytes) at \(location)")
}

private func checkNodes(_ map: ConfigMap, _ lines: [Int]) {
    for entry in map.entries {
        check(entry.keyLocation, lines, "key \(entry.key)")
        checkNode(entry.node, lines)
    }
}

private func checkNode(_ node: ConfigNode, _ lines: [Int]) {
    check(node.location, lines, "value")
    switch node.value {
    case .map(let map): checkNodes(map, lines)
    case .array(let items): for item in items { checkNode(item, lines) }
    default: break
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if text.lowercased().contains("include") { return 0 }
    let lines = lineLengths(text)
    let config: ConfigMap
    do {
        config = try ConfigParser.parse(text, file: file, baseDirectory: "/nonexistent-fuzz", environment: [:])
    } catch {
        guard let location = error.location else { fatalError("a parse error without a location: \(error)") }
        check(location, lines, "parse error \(error.message)")
        return 0
    }
    checkNodes(config, lines)
    var options = Options()
    do {
        try options.apply(config)
    } catch {
        if let location = error.location { check(location, lines, "apply error \(error.message)") }
    }
    return 0
}
