import Testing
import Foundation
@testable import HTTPServer

@Suite("Router (in memory)")
struct RouterTests {
    static func makeRouter() -> HTTPRouter {
        var router = HTTPRouter()
        router.get("/v1/users/{id}") { request in
            .text("user \(request.pathParameters["id"] ?? "-")")
        }
        router.get("/v1/users/me") { _ in .text("me") }
        router.delete("/v1/users/{id}") { request in .text("deleted \(request.pathParameters["id"] ?? "-")") }
        router.post("/v1/users", bodyLimit: 16) { request in
            // The server has no Codable helpers (it links no Foundation); a handler brings its own.
            struct NewUser: Codable { var name: String }
            guard let user = try? JSONDecoder().decode(NewUser.self, from: Data(request.body)) else {
                throw HTTPError(.badRequest, "invalid JSON body")
            }
            return .json(bytes: Array(try JSONEncoder().encode(user)), status: .created)
        }
        router.get("/") { _ in .text("root") }
        router.get("/search") { request in
            .text(request.query.items.map { "\($0.name)=\($0.value)" }.joined(separator: "|"))
        }
        router.get("/boom") { _ in throw CancellationError() }
        router.get("/teapot") { _ in throw HTTPError(HTTPStatus(418), "short and \"stout\"") }
        return router
    }

    func respond(_ method: HTTPMethod, _ target: String, body: String = "") async -> HTTPResponse {
        await Self.makeRouter().respond(to: HTTPRequest(method: method, target: target, body: Array(body.utf8)))
    }

    @Test func bindsPathParametersPercentDecoded() async {
        let response = await respond(.get, "/v1/users/a%20b%2Fc")
        #expect(response.status == .ok)
        #expect(String(decoding: response.bodyBytes, as: UTF8.self) == "user a b/c")
    }

    @Test func prefersALiteralSegmentOverAParameter() async {
        let response = await respond(.get, "/v1/users/me")
        #expect(String(decoding: response.bodyBytes, as: UTF8.self) == "me")
    }

    @Test func answersUnknownPathsWith404JSON() async throws {
        let response = await respond(.get, "/v1/nothing")
        #expect(response.status == .notFound)
        #expect(response.headers["Content-Type"] == "application/json")
        let json = try JSONSerialization.jsonObject(with: Data(response.bodyBytes)) as? [String: Any]
        #expect(json?["status"] as? Int == 404)
        #expect((json?["error"] as? String)?.isEmpty == false)
    }

    @Test func answersWrongMethodWith405AndAllow() async {
        let response = await respond(.put, "/v1/users/7")
        #expect(response.status == .methodNotAllowed)
        #expect(response.headers["Allow"] == "DELETE, GET, HEAD")
        let other = await respond(.get, "/v1/users")
        #expect(other.status == .methodNotAllowed)
        #expect(other.headers["Allow"] == "POST")
    }

    @Test func servesHeadThroughGetWithoutABody() async {
        let response = await respond(.head, "/v1/users/7")
        #expect(response.status == .ok)
        #expect(response.bodyBytes.isEmpty)
        #expect(response.headers["Content-Length"] == "6")
    }

    @Test func decodesQueryStrings() async {
        let response = await respond(.get, "/search?q=a+b%26c&empty=&flag&q=2&=x")
        #expect(String(decoding: response.bodyBytes, as: UTF8.self) == "q=a b&c|empty=|flag=|q=2|=x")
        let request = HTTPRequest(method: .get, target: "/p%C3%A9?x=%E2%9C%93")
        #expect(request.path == "/pé")
        #expect(request.query["x"] == "✓")
        #expect(request.query.values(for: "missing").isEmpty)
    }

    @Test func aHandlerDecodesAndAnswersJSON() async throws {
        let created = await respond(.post, "/v1/users", body: #"{"name":"ann"}"#)
        #expect(created.status == .created)
        #expect(String(decoding: created.bodyBytes, as: UTF8.self) == #"{"name":"ann"}"#)
        let bad = await respond(.post, "/v1/users", body: "{")
        #expect(bad.status == .badRequest)
    }

    @Test func mapsThrownErrorsToJSON() async throws {
        let boom = await respond(.get, "/boom")
        #expect(boom.status == .internalServerError)
        let teapot = await respond(.get, "/teapot")
        #expect(teapot.status.code == 418)
        let json = try JSONSerialization.jsonObject(with: Data(teapot.bodyBytes)) as? [String: Any]
        #expect(json?["error"] as? String == "short and \"stout\"")
        #expect(json?["status"] as? Int == 418)
    }

    @Test func reportsEachRoutesBodyLimit() {
        let router = Self.makeRouter()
        #expect(router.bodyLimit(method: .post, target: "/v1/users") == 16)
        #expect(router.bodyLimit(method: .get, target: "/") == 1 << 20)
        #expect(router.bodyLimit(method: .post, target: "/nowhere") == 1 << 20)
    }

    @Test func encodesServerSentEvents() {
        let event = ServerSentEvent(data: "line1\nline2\r\nline3", event: "tick\nx", id: "7")
        #expect(String(decoding: event.encoded, as: UTF8.self)
            == "event: tick x\nid: 7\ndata: line1\ndata: line2\ndata: line3\n\n")
    }
}
