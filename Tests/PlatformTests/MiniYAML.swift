// A small reader for the block YAML that `docker-compose config` prints (PyYAML's safe_dump with
// block style): nested mappings, sequences (also at their key's indentation), plain and quoted
// scalars, `{}` and `[]`, and long scalars folded onto continuation lines. Nothing else of YAML
// (anchors, tags, flow collections with content, multi-document) appears in that output, so
// anything else is an error rather than a guess. docker-compose 1.29 has no JSON output
// (`config --format` arrived with Compose v2).

/// A parsed YAML node.
indirect enum YAMLNode: Equatable, CustomStringConvertible {
    case scalar(String)
    case sequence([YAMLNode])
    case mapping([(key: String, value: YAMLNode)])

    static func == (a: YAMLNode, b: YAMLNode) -> Bool {
        switch (a, b) {
        case let (.scalar(x), .scalar(y)): return x == y
        case let (.sequence(x), .sequence(y)): return x == y
        case let (.mapping(x), .mapping(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    var description: String {
        switch self {
        case .scalar(let s): return s
        case .sequence(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .mapping(let pairs): return "{" + pairs.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        }
    }

    /// The value under `key` of a mapping.
    subscript(key: String) -> YAMLNode? {
        guard case .mapping(let pairs) = self else { return nil }
        return pairs.first { $0.key == key }?.value
    }

    /// The keys of a mapping, in order.
    var keys: [String] {
        guard case .mapping(let pairs) = self else { return [] }
        return pairs.map(\.key)
    }

    var string: String? {
        guard case .scalar(let s) = self else { return nil }
        return s
    }

    var items: [YAMLNode] {
        guard case .sequence(let items) = self else { return [] }
        return items
    }
}

struct YAMLError: Error, CustomStringConvertible {
    var line: Int
    var message: String
    var description: String { "yaml line \(line): \(message)" }
}

enum MiniYAML {
    private struct Line {
        var number: Int
        var indent: Int
        var text: String
    }

    /// Parses one block-style document.
    /// - Throws: ``YAMLError`` for input outside the supported subset.
    static func parse(_ text: String) throws -> YAMLNode {
        var lines: [Line] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let content = raw.drop { $0 == " " }
            if content.isEmpty || content.hasPrefix("#") || content == "---" { continue }
            if content.hasPrefix("\t") { throw YAMLError(line: index + 1, message: "tab indentation") }
            lines.append(Line(number: index + 1, indent: raw.count - content.count, text: String(content)))
        }
        guard let first = lines.first else { return .mapping([]) }
        var position = 0
        let node = try parseBlock(&lines, &position, indent: first.indent)
        if position < lines.count { throw YAMLError(line: lines[position].number, message: "unexpected indentation") }
        return node
    }

    private static func isSequenceItem(_ text: String) -> Bool { text == "-" || text.hasPrefix("- ") }

    private static func parseBlock(_ lines: inout [Line], _ position: inout Int, indent: Int) throws -> YAMLNode {
        isSequenceItem(lines[position].text) ? try parseSequence(&lines, &position, indent: indent)
                                             : try parseMapping(&lines, &position, indent: indent)
    }

    private static func parseSequence(_ lines: inout [Line], _ position: inout Int, indent: Int) throws -> YAMLNode {
        var items: [YAMLNode] = []
        while position < lines.count, lines[position].indent == indent, isSequenceItem(lines[position].text) {
            let line = lines[position]
            let rest = line.text == "-" ? "" : String(line.text.dropFirst(2).drop { $0 == " " })
            if rest.isEmpty {
                position += 1
                guard position < lines.count, lines[position].indent > indent else { items.append(.scalar("")); continue }
                items.append(try parseBlock(&lines, &position, indent: lines[position].indent))
            } else if splitKey(rest) != nil || isSequenceItem(rest) {
                // "- key: value" starts a mapping (or "- - x" a sequence) indented past the dash.
                let inner = line.indent + (line.text.count - rest.count)
                lines[position] = Line(number: line.number, indent: inner, text: rest)
                items.append(try parseBlock(&lines, &position, indent: inner))
            } else {
                position += 1
                items.append(try scalar(rest, continuedFrom: &lines, &position, indent: indent, line: line.number))
            }
        }
        return .sequence(items)
    }

    private static func parseMapping(_ lines: inout [Line], _ position: inout Int, indent: Int) throws -> YAMLNode {
        var pairs: [(key: String, value: YAMLNode)] = []
        while position < lines.count, lines[position].indent == indent, !isSequenceItem(lines[position].text) {
            let line = lines[position]
            guard let (key, rest) = splitKey(line.text) else { throw YAMLError(line: line.number, message: "expected 'key: value' in \(line.text)") }
            position += 1
            if !rest.isEmpty {
                pairs.append((key, try scalar(rest, continuedFrom: &lines, &position, indent: indent, line: line.number)))
            } else if position < lines.count, lines[position].indent > indent {
                pairs.append((key, try parseBlock(&lines, &position, indent: lines[position].indent)))
            } else if position < lines.count, lines[position].indent == indent, isSequenceItem(lines[position].text) {
                pairs.append((key, try parseSequence(&lines, &position, indent: indent)))
            } else {
                pairs.append((key, .scalar("")))
            }
        }
        return .mapping(pairs)
    }

    /// Splits `key: rest` (or `key:`), the key plain or quoted; nil if the line is not a mapping entry.
    private static func splitKey(_ text: String) -> (String, String)? {
        if let quote = text.first, quote == "'" || quote == "\"" {
            guard let (key, after) = quoted(text), after.hasPrefix(":") else { return nil }
            let rest = after.dropFirst()
            guard rest.isEmpty || rest.hasPrefix(" ") else { return nil }
            return (key, rest.trimmingCharactersSpace())
        }
        if text.hasSuffix(":") && !text.contains(": ") { return (String(text.dropLast()), "") }
        guard let range = text.range(of: ": ") else { return nil }
        return (String(text[..<range.lowerBound]), String(text[range.upperBound...]).trimmingCharactersSpace())
    }

    /// A quoted scalar at the start of `text` and what follows it.
    private static func quoted(_ text: String) -> (String, Substring)? {
        guard let quote = text.first else { return nil }
        var value = ""
        var index = text.index(after: text.startIndex)
        while index < text.endIndex {
            let c = text[index]
            if quote == "'" && c == "'" {
                let next = text.index(after: index)
                if next < text.endIndex && text[next] == "'" { value.append("'"); index = text.index(after: next); continue }
                return (value, text[next...])
            }
            if quote == "\"" && c == "\\" {
                let next = text.index(after: index)
                guard next < text.endIndex else { return nil }
                switch text[next] {
                case "n": value.append("\n")
                case "t": value.append("\t")
                default: value.append(text[next])
                }
                index = text.index(after: next)
                continue
            }
            if quote == "\"" && c == "\"" { return (value, text[text.index(after: index)...]) }
            value.append(c)
            index = text.index(after: index)
        }
        return nil
    }

    /// A scalar value, joined with its continuation lines (indented deeper than its key).
    private static func scalar(_ first: String, continuedFrom lines: inout [Line], _ position: inout Int,
                               indent: Int, line: Int) throws -> YAMLNode {
        var text = first
        while position < lines.count, lines[position].indent > indent {
            text += " " + lines[position].text
            position += 1
        }
        if text == "{}" { return .mapping([]) }
        if text == "[]" { return .sequence([]) }
        if text.first == "'" || text.first == "\"" {
            guard let (value, after) = quoted(text), after.isEmpty else { throw YAMLError(line: line, message: "bad quoted scalar \(text)") }
            return .scalar(value)
        }
        if text.first == "{" || text.first == "[" || text.first == "&" || text.first == "*" || text.first == "!" || text.first == "|" || text.first == ">" {
            throw YAMLError(line: line, message: "unsupported YAML construct: \(text)")
        }
        return .scalar(text)
    }
}

private extension StringProtocol {
    func trimmingCharactersSpace() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
