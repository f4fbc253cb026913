/// A route handler: gets the request, returns the response. Throw `HTTPError` for a JSON error response;
/// any other error becomes a JSON 500.
public typealias HTTPHandler = @Sendable (HTTPRequest) async throws -> HTTPResponse

/// Maps method + path to handlers. Build it, then hand it to `HTTPServer` (it is a value; the server keeps
/// its own copy).
///
/// Patterns are `/`-separated segments; a segment `{name}` matches any one non-empty segment and is passed
/// in `HTTPRequest.pathParameters["name"]` (percent-decoded). A literal segment wins over a parameter.
/// A path that matches no pattern gets 404; a path that matches only for other methods gets 405 with `Allow`.
/// `HEAD` is served by the `GET` route (without the body) unless a `HEAD` route exists.
public struct HTTPRouter: Sendable {
    /// Body limit for routes registered without one (1 MiB).
    public var defaultBodyLimit: Int

    struct Route: Sendable {
        var method: HTTPMethod
        var segments: [Segment]
        var literalCount: Int
        var bodyLimit: Int?
        var handler: HTTPHandler
    }

    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    /// The outcome of matching a request against the routes.
    enum Match: Sendable {
        case found(handler: HTTPHandler, bodyLimit: Int, parameters: [String: String], stripBody: Bool)
        case notFound
        case methodNotAllowed(allow: [String])
    }

    private(set) var routes: [Route] = []

    /// Called with each 404 or 405 the router answers itself (no handler ran), so callers that count
    /// requests per route see those too. Runs in the request's task; keep it cheap.
    public var onUnrouted: (@Sendable (_ request: HTTPRequest, _ response: HTTPResponse) -> Void)?

    /// Creates an empty router.
    /// - Parameter defaultBodyLimit: the body limit of routes registered without one.
    public init(defaultBodyLimit: Int = 1 << 20) {
        self.defaultBodyLimit = defaultBodyLimit
    }

    /// Registers `handler` for `method` and `pattern` (e.g. `/v1/users/{id}`).
    /// - Parameters:
    ///   - bodyLimit: the largest request body accepted in bytes (413 above it); nil for the router's default.
    /// - Precondition: `pattern` starts with `/` and its parameter names are unique (a programming error).
    public mutating func add(
        _ method: HTTPMethod, _ pattern: String, bodyLimit: Int? = nil, _ handler: @escaping HTTPHandler
    ) {
        precondition(pattern.hasPrefix("/"), "router: pattern must start with /: \(pattern)")
        let segments = Self.split(Substring(pattern)).map { raw -> Segment in
            if raw.hasPrefix("{") && raw.hasSuffix("}") && raw.count > 2 {
                return .parameter(String(raw.dropFirst().dropLast()))
            }
            return .literal(String(raw))
        }
        let literals = segments.filter { if case .literal = $0 { true } else { false } }.count
        routes.append(Route(method: method, segments: segments, literalCount: literals, bodyLimit: bodyLimit, handler: handler))
    }

    /// Registers a `GET` route.
    public mutating func get(_ pattern: String, _ handler: @escaping HTTPHandler) {
        add(.get, pattern, handler)
    }
    /// Registers a `POST` route.
    public mutating func post(_ pattern: String, bodyLimit: Int? = nil, _ handler: @escaping HTTPHandler) {
        add(.post, pattern, bodyLimit: bodyLimit, handler)
    }
    /// Registers a `PUT` route.
    public mutating func put(_ pattern: String, bodyLimit: Int? = nil, _ handler: @escaping HTTPHandler) {
        add(.put, pattern, bodyLimit: bodyLimit, handler)
    }
    /// Registers a `PATCH` route.
    public mutating func patch(_ pattern: String, bodyLimit: Int? = nil, _ handler: @escaping HTTPHandler) {
        add(.patch, pattern, bodyLimit: bodyLimit, handler)
    }
    /// Registers a `DELETE` route.
    public mutating func delete(_ pattern: String, _ handler: @escaping HTTPHandler) {
        add(.delete, pattern, handler)
    }

    /// Finds the route for `method` and the raw request `target` (path and optional query).
    func match(method: HTTPMethod, target: String) -> Match {
        let rawPath = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let segments = Self.split(rawPath)
        var best: (route: Route, parameters: [String: String])?
        var bestGet: (route: Route, parameters: [String: String])?
        var allowed: Set<String> = []
        for route in routes {
            guard let parameters = Self.bind(route.segments, to: segments) else { continue }
            allowed.insert(route.method.rawValue)
            if route.method == method, best == nil || route.literalCount > best!.route.literalCount {
                best = (route, parameters)
            }
            if route.method == .get, bestGet == nil || route.literalCount > bestGet!.route.literalCount {
                bestGet = (route, parameters)
            }
        }
        var stripBody = false
        if best == nil && method == .head, let get = bestGet {
            best = get
            stripBody = true
        }
        if let best {
            return .found(handler: best.route.handler, bodyLimit: best.route.bodyLimit ?? defaultBodyLimit,
                          parameters: best.parameters, stripBody: stripBody)
        }
        if allowed.isEmpty { return .notFound }
        if allowed.contains("GET") { allowed.insert("HEAD") }
        return .methodNotAllowed(allow: allowed.sorted())
    }

    /// The body limit for a request to `target` with `method` (the default when no route matches).
    func bodyLimit(method: HTTPMethod, target: String) -> Int {
        if case .found(_, let limit, _, _) = match(method: method, target: target) { return limit }
        return defaultBodyLimit
    }

    /// Routes `request` and runs its handler in the caller's task, mapping 404, 405 and thrown errors to
    /// JSON error responses. This is what the server calls; tests can call it directly (in-memory mode).
    public func respond(to request: HTTPRequest) async -> HTTPResponse {
        switch match(method: request.method, target: request.target) {
        case .notFound:
            let response = HTTPResponse.error(.notFound, "no route for \(request.path)")
            onUnrouted?(request, response)
            return response
        case .methodNotAllowed(let allow):
            var response = HTTPResponse.error(.methodNotAllowed, "method \(request.method) not allowed for \(request.path)")
            response.headers.add(name: "Allow", value: allow.joined(separator: ", "))
            onUnrouted?(request, response)
            return response
        case .found(let handler, _, let parameters, let stripBody):
            var routed = request
            routed.pathParameters = parameters
            var response: HTTPResponse
            do {
                response = try await handler(routed)
            } catch let error as HTTPError {
                response = error.response
            } catch {
                response = .error(.internalServerError, "internal error: \(error)")
            }
            if stripBody, case .bytes(let bytes) = response.body {
                // HEAD: same headers as GET, announced length, no body.
                response.headers.replaceOrAdd(name: "Content-Length", value: String(bytes.count))
                response.body = .bytes([])
            }
            return response
        }
    }

    /// Splits a path (without query) into segments after its leading `/`; `/` alone is one empty segment.
    static func split(_ path: Substring) -> [Substring] {
        var rest = path
        if rest.hasPrefix("/") { rest = rest.dropFirst() }
        return rest.split(separator: "/", omittingEmptySubsequences: false)
    }

    static func bind(_ pattern: [Segment], to segments: [Substring]) -> [String: String]? {
        guard pattern.count == segments.count else { return nil }
        var parameters: [String: String] = [:]
        for (part, segment) in zip(pattern, segments) {
            switch part {
            case .literal(let text):
                guard let decoded = URLDecoding.percentDecode(segment.utf8, plusAsSpace: false), decoded == text
                else { return nil }
            case .parameter(let name):
                guard !segment.isEmpty, let decoded = URLDecoding.percentDecode(segment.utf8, plusAsSpace: false)
                else { return nil }
                parameters[name] = decoded
            }
        }
        return parameters
    }
}
