// Incremental HTTP/1.1 request parser: bytes in, complete requests out. No I/O, no Foundation
// (it is compiled into the fuzz target on its own).
//
// The head (request line + header fields) is copied into one bounded buffer while a small state
// machine looks for the empty line that ends it; the request line is validated as soon as its line
// ends, the header fields once the head is complete. Bodies are copied in bulk (Content-Length) or
// through a byte state machine for the chunk framing (chunked). Everything is bounded: the head by
// `maxHeadSize`, the body by the limit the delegate returns for that head.

/// The parsed start line and header fields of a request.
package struct HTTPRequestHead: Sendable, Equatable {
    /// The method token.
    package var method: HTTPMethod
    /// The request target exactly as sent (origin form `/path?query`, or `*`).
    package var target: String
    /// The protocol version.
    package var version: HTTPVersion
    /// The header fields, in order.
    package var headers: HTTPHeaders
    /// Whether the connection stays open after this request (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`).
    package var keepAlive: Bool
    /// Whether the client sent `Expect: 100-continue` and waits for it before sending the body.
    package var expectsContinue: Bool
    /// How the body is framed.
    package var framing: Framing

    /// Body framing of a request.
    package enum Framing: Sendable, Equatable {
        case none
        case contentLength(Int)
        case chunked
    }
}

/// Receives what the parser finds, in order.
package protocol HTTPParserDelegate {
    /// A valid head was parsed; returns the body limit in bytes for this request.
    mutating func parserDidParseHead(_ head: HTTPRequestHead) -> Int
    /// A whole request was parsed. Returns false to stop parsing right after it
    /// (`parse` then returns `.stopped(consumed:)`).
    mutating func parserDidParseRequest(_ head: HTTPRequestHead, body: [UInt8]) -> Bool
}

/// The outcome of one `parse` call.
package enum HTTPParseResult: Equatable, Sendable {
    /// Every byte was consumed (a request may be partly buffered).
    case ok
    /// The delegate stopped after a request; `consumed` bytes of the input were used, the rest was not looked at.
    case stopped(consumed: Int)
    /// The input is not a servable request; the parser stays failed.
    case error(HTTPParseError)
}

/// An incremental HTTP/1.x request parser. Feed it bytes in pieces of any size.
package struct HTTPRequestParser: Sendable {
    /// Maximum bytes of request line plus header fields (including the line ends), also applied to trailers.
    package var maxHeadSize: Int
    /// Maximum bytes of one chunk-size line (size plus extensions).
    package static let maxChunkLine = 4096

    private enum HeadScan: Sendable { case inLine, cr, lineStart, lineStartCR }

    private enum State: Sendable {
        case leading                          // skipping empty lines before a request line
        case head(HeadScan)
        case body(remaining: Int)
        case chunkSize(value: Int, digits: Int, lineBytes: Int)
        case chunkExtension(value: Int, lineBytes: Int)
        case chunkSizeLF(value: Int)
        case chunkData(remaining: Int)
        case chunkDataCR
        case chunkDataLF
        case trailers(HeadScan, bytes: Int)
        case failed(HTTPParseError)
    }

    private var state: State = .leading
    private var leadingBytes = 0
    private var headBuffer: [UInt8] = []
    private var requestLineEnd = 0            // offset after the request line's LF, 0 while unknown
    private var requestLine: (HTTPMethod, String, HTTPVersion)?
    private var head: HTTPRequestHead?
    private var bodyLimit = 0
    private var body: [UInt8] = []

    /// Creates a parser.
    /// - Parameter maxHeadSize: the request line + headers limit (16 KiB by default); over it the parser fails
    ///   with `.headTooLarge`.
    package init(maxHeadSize: Int = 16 * 1024) {
        self.maxHeadSize = maxHeadSize
    }

    /// Whether part of a request has been received (the server's slow-client timeout applies then).
    package var hasPartialRequest: Bool {
        switch state {
        case .leading: leadingBytes > 0
        case .failed: false
        default: true
        }
    }

    /// Feeds `input`; calls the delegate once per head and once per complete request, in order.
    package mutating func parse<D: HTTPParserDelegate>(
        _ input: UnsafeRawBufferPointer, into delegate: inout D
    ) -> HTTPParseResult {
        let n = input.count
        var i = 0
        while true {
            switch state {
            case .failed(let error):
                return .error(error)

            case .leading:
                while i < n && (input[i] == 0x0D || input[i] == 0x0A) {
                    i += 1
                    leadingBytes += 1
                }
                if leadingBytes > maxHeadSize { return fail(.headTooLarge) }
                if i == n { return .ok }
                state = .head(.inLine)

            case .head(var scan):
                let budget = maxHeadSize - headBuffer.count
                let end = min(n, i + budget)
                let start = i
                var complete = false
                var lineEnded = false
                while i < end {
                    let b = input[i]
                    i += 1
                    switch scan {
                    case .inLine:
                        if b == 0x0D { scan = .cr } else if b == 0x0A { scan = .lineStart; lineEnded = true }
                    case .cr:
                        guard b == 0x0A else { return fail(.malformed("bare CR in head")) }
                        scan = .lineStart
                        lineEnded = true
                    case .lineStart:
                        if b == 0x0D { scan = .lineStartCR } else if b == 0x0A { complete = true } else { scan = .inLine }
                    case .lineStartCR:
                        guard b == 0x0A else { return fail(.malformed("bare CR in head")) }
                        complete = true
                    }
                    if complete { break }
                    if lineEnded && requestLineEnd == 0 {
                        // Stop here so the request line is judged before anything after it, whatever
                        // the chunking (the same input must give the same error).
                        requestLineEnd = headBuffer.count + (i - start)
                        break
                    }
                    lineEnded = false
                }
                headBuffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[start..<i]))
                if requestLine == nil && requestLineEnd > 0 {
                    switch Self.parseRequestLine(headBuffer[0..<requestLineEnd]) {
                    case .success(let line): requestLine = line
                    case .failure(let error): return fail(error)
                    }
                }
                if complete {
                    if let error = finishHead(into: &delegate) { return fail(error) }
                    if case .leading = state, !completeRequest(into: &delegate) { return .stopped(consumed: i) }
                    continue
                }
                if headBuffer.count >= maxHeadSize { return fail(.headTooLarge) }
                state = .head(scan)
                if i == n { return .ok }

            case .body(let remaining):
                let take = min(remaining, n - i)
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[i..<(i + take)]))
                i += take
                if take == remaining {
                    if !completeRequest(into: &delegate) { return .stopped(consumed: i) }
                    continue
                }
                state = .body(remaining: remaining - take)
                return .ok

            case .chunkSize(var value, var digits, var lineBytes):
                while i < n {
                    let b = input[i]
                    i += 1
                    lineBytes += 1
                    if lineBytes > Self.maxChunkLine { return fail(.malformed("chunk size line too long")) }
                    if let d = Self.hexValue(b) {
                        // Checked against the body limit after each digit, and against overflow here.
                        guard value <= (Int.max - 15) / 16 else { return fail(.bodyTooLarge) }
                        value = value * 16 + d
                        digits += 1
                        if value > bodyLimit - body.count { return fail(.bodyTooLarge) }
                        continue
                    }
                    guard digits > 0 else { return fail(.malformed("invalid chunk size")) }
                    switch b {
                    case 0x3B, 0x20, 0x09:
                        state = .chunkExtension(value: value, lineBytes: lineBytes)
                    case 0x0D:
                        state = .chunkSizeLF(value: value)
                    case 0x0A:
                        chunkSizeLineDone(value)
                    default:
                        return fail(.malformed("invalid chunk size"))
                    }
                    break
                }
                if case .chunkSize = state {
                    state = .chunkSize(value: value, digits: digits, lineBytes: lineBytes)
                    return .ok
                }

            case .chunkExtension(let value, var lineBytes):
                while i < n {
                    let b = input[i]
                    i += 1
                    lineBytes += 1
                    if lineBytes > Self.maxChunkLine { return fail(.malformed("chunk size line too long")) }
                    if b == 0x0D { state = .chunkSizeLF(value: value); break }
                    if b == 0x0A { chunkSizeLineDone(value); break }
                    if (b < 0x20 && b != 0x09) || b == 0x7F { return fail(.malformed("invalid chunk extension")) }
                }
                if case .chunkExtension = state {
                    state = .chunkExtension(value: value, lineBytes: lineBytes)
                    return .ok
                }

            case .chunkSizeLF(let value):
                guard i < n else { return .ok }
                guard input[i] == 0x0A else { return fail(.malformed("bare CR in chunk size line")) }
                i += 1
                chunkSizeLineDone(value)

            case .chunkData(let remaining):
                let take = min(remaining, n - i)
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[i..<(i + take)]))
                i += take
                if take == remaining {
                    state = .chunkDataCR
                    continue
                }
                state = .chunkData(remaining: remaining - take)
                return .ok

            case .chunkDataCR:
                guard i < n else { return .ok }
                let b = input[i]
                i += 1
                if b == 0x0D { state = .chunkDataLF } else if b == 0x0A {
                    state = .chunkSize(value: 0, digits: 0, lineBytes: 0)
                } else { return fail(.malformed("missing CRLF after chunk data")) }

            case .chunkDataLF:
                guard i < n else { return .ok }
                guard input[i] == 0x0A else { return fail(.malformed("missing CRLF after chunk data")) }
                i += 1
                state = .chunkSize(value: 0, digits: 0, lineBytes: 0)

            case .trailers(var scan, var bytes):
                var complete = false
                while i < n {
                    let b = input[i]
                    i += 1
                    bytes += 1
                    if bytes > maxHeadSize { return fail(.headTooLarge) }
                    switch scan {
                    case .inLine:
                        if b == 0x0D { scan = .cr } else if b == 0x0A { scan = .lineStart }
                        else if (b < 0x20 && b != 0x09) || b == 0x7F { return fail(.malformed("invalid trailer")) }
                    case .cr:
                        guard b == 0x0A else { return fail(.malformed("bare CR in trailers")) }
                        scan = .lineStart
                    case .lineStart:
                        if b == 0x0D { scan = .lineStartCR } else if b == 0x0A { complete = true }
                        else if b < 0x20 || b == 0x7F { return fail(.malformed("invalid trailer")) }
                        else { scan = .inLine }
                    case .lineStartCR:
                        guard b == 0x0A else { return fail(.malformed("bare CR in trailers")) }
                        complete = true
                    }
                    if complete { break }
                }
                if complete {
                    if !completeRequest(into: &delegate) { return .stopped(consumed: i) }
                    continue
                }
                state = .trailers(scan, bytes: bytes)
                return .ok
            }
        }
    }

    // MARK: - Steps

    private mutating func fail(_ error: HTTPParseError) -> HTTPParseResult {
        state = .failed(error)
        headBuffer = []
        body = []
        return .error(error)
    }

    private mutating func reset() {
        state = .leading
        leadingBytes = 0
        headBuffer.removeAll(keepingCapacity: headBuffer.capacity <= 4096)
        body = []
        requestLineEnd = 0
        requestLine = nil
        head = nil
    }

    /// Calls the delegate with the finished request and resets; returns the delegate's answer.
    private mutating func completeRequest<D: HTTPParserDelegate>(into delegate: inout D) -> Bool {
        guard let finished = head else { return true }   // unreachable: a body state implies a head
        let finishedBody = body
        reset()
        return delegate.parserDidParseRequest(finished, body: finishedBody)
    }

    private mutating func chunkSizeLineDone(_ value: Int) {
        if value == 0 {
            state = .trailers(.lineStart, bytes: 0)
        } else {
            state = .chunkData(remaining: value)
        }
    }

    /// Parses the header fields and framing of the complete head, asks the delegate for the body limit and
    /// moves to the body state (or back to `.leading` when there is no body). Returns an error or nil.
    private mutating func finishHead<D: HTTPParserDelegate>(into delegate: inout D) -> HTTPParseError? {
        guard let (method, target, version) = requestLine else { return .malformed("missing request line") }
        var headers = HTTPHeaders()
        var lineStart = requestLineEnd
        let count = headBuffer.count
        while lineStart < count {
            var lineEnd = lineStart
            while headBuffer[lineEnd] != 0x0A { lineEnd += 1 }   // the head ends in LF, so this stops
            var contentEnd = lineEnd
            if contentEnd > lineStart && headBuffer[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            if contentEnd == lineStart { break }                   // the empty line
            switch Self.parseField(headBuffer[lineStart..<contentEnd]) {
            case .success(let field): headers.add(name: field.0, value: field.1)
            case .failure(let error): return error
            }
            lineStart = lineEnd + 1
        }

        // Framing (RFC 9112 section 6).
        var framing = HTTPRequestHead.Framing.none
        let lengths = headers.tokens(for: "Content-Length")
        let codings = headers.tokens(for: "Transfer-Encoding")
        if headers.contains("Transfer-Encoding") {
            if version == .http1_0 { return .malformed("transfer-encoding in an HTTP/1.0 request") }
            if headers.contains("Content-Length") { return .malformed("both transfer-encoding and content-length") }
            for coding in codings where coding.isEmpty || !coding.utf8.allSatisfy(Self.isTokenByte) {
                return .malformed("invalid transfer-encoding")
            }
            if let other = codings.first(where: { $0 != "chunked" }) { return .unsupportedTransferEncoding(other) }
            if codings.count != 1 { return .malformed("chunked applied more than once") }
            framing = .chunked
        } else if !lengths.isEmpty {
            var length: Int?
            for text in lengths {
                guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    return .malformed("invalid content-length")
                }
                // Over 18 digits cannot fit any limit; treat as too large rather than overflow.
                guard text.utf8.count <= 18, let value = Int(text) else { return .bodyTooLarge }
                if let previous = length, previous != value { return .malformed("conflicting content-length") }
                length = value
            }
            if let length, length > 0 { framing = .contentLength(length) }
        }

        if version.minor >= 1 {
            let hosts = headers.values(for: "Host")
            if hosts.count != 1 { return .malformed(hosts.isEmpty ? "missing host header" : "duplicate host header") }
        }
        let connection = headers.tokens(for: "Connection")
        let keepAlive = version.minor >= 1 ? !connection.contains("close") : connection.contains("keep-alive")
        let expects = headers.tokens(for: "Expect").contains("100-continue") && version.minor >= 1

        let parsed = HTTPRequestHead(
            method: method, target: target, version: version, headers: headers,
            keepAlive: keepAlive, expectsContinue: expects, framing: framing)
        head = parsed
        bodyLimit = max(0, delegate.parserDidParseHead(parsed))
        switch framing {
        case .none:
            state = .leading
        case .contentLength(let length):
            if length > bodyLimit { return .bodyTooLarge }
            body.reserveCapacity(length)
            state = .body(remaining: length)
        case .chunked:
            state = .chunkSize(value: 0, digits: 0, lineBytes: 0)
        }
        return nil
    }

    // MARK: - Syntax helpers

    /// tchar (RFC 9110 5.6.2).
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: true
        default: false
        }
    }

    static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: Int(b - 0x30)
        case 0x41...0x46: Int(b - 0x41 + 10)
        case 0x61...0x66: Int(b - 0x61 + 10)
        default: nil
        }
    }

    /// `method SP request-target SP HTTP/1.x` followed by CRLF or LF.
    static func parseRequestLine(_ line: ArraySlice<UInt8>) -> Result<(HTTPMethod, String, HTTPVersion), HTTPParseError> {
        var end = line.endIndex - 1                      // the LF
        if end > line.startIndex && line[end - 1] == 0x0D { end -= 1 }
        let content = line[line.startIndex..<end]
        guard let firstSpace = content.firstIndex(of: 0x20) else { return .failure(.malformed("malformed request line")) }
        let methodBytes = content[content.startIndex..<firstSpace]
        guard !methodBytes.isEmpty, methodBytes.allSatisfy(isTokenByte) else {
            return .failure(.malformed("invalid method"))
        }
        let rest = content[(firstSpace + 1)...]
        guard let secondSpace = rest.firstIndex(of: 0x20) else { return .failure(.malformed("malformed request line")) }
        let targetBytes = rest[rest.startIndex..<secondSpace]
        let versionBytes = rest[(secondSpace + 1)...]
        guard !targetBytes.isEmpty, targetBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(.malformed("invalid request target"))
        }
        // "HTTP/" DIGIT "." DIGIT, checked first so an HTTP/2 preface gets 505.
        let v = Array(versionBytes)
        guard v.count == 8, v[0] == 0x48, v[1] == 0x54, v[2] == 0x54, v[3] == 0x50, v[4] == 0x2F,
            v[6] == 0x2E, (0x30...0x39).contains(v[5]), (0x30...0x39).contains(v[7])
        else { return .failure(.malformed("invalid HTTP version")) }
        let version = HTTPVersion(major: Int(v[5] - 0x30), minor: Int(v[7] - 0x30))
        guard version.major == 1 else { return .failure(.unsupportedVersion) }
        let method = HTTPMethod(rawValue: String(decoding: methodBytes, as: UTF8.self))
        let first = targetBytes[targetBytes.startIndex]
        if first != 0x2F && !(targetBytes.count == 1 && first == 0x2A && method == .options) {
            return .failure(.malformed("invalid request target"))
        }
        return .success((method, String(decoding: targetBytes, as: UTF8.self), version))
    }

    /// `name ":" OWS value OWS` (no obs-fold, no whitespace before the colon).
    static func parseField(_ line: ArraySlice<UInt8>) -> Result<(String, String), HTTPParseError> {
        guard let colon = line.firstIndex(of: 0x3A) else { return .failure(.malformed("invalid header field")) }
        let name = line[line.startIndex..<colon]
        guard !name.isEmpty, name.allSatisfy(isTokenByte) else { return .failure(.malformed("invalid header name")) }
        var lo = colon + 1
        var hi = line.endIndex
        while lo < hi && (line[lo] == 0x20 || line[lo] == 0x09) { lo += 1 }
        while hi > lo && (line[hi - 1] == 0x20 || line[hi - 1] == 0x09) { hi -= 1 }
        let value = line[lo..<hi]
        guard value.allSatisfy({ $0 >= 0x20 ? $0 != 0x7F : $0 == 0x09 }) else {
            return .failure(.malformed("invalid header value"))
        }
        return .success((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
    }
}
