// INFO: the JSON sent first on every connection, with nats-server 2.9.10's field order.

import NATSProtocol

/// Builds the INFO line. The part shared by all connections is encoded once; each connection
/// appends only its `client_id` and `client_ip`.
struct InfoTemplate: Sendable {
    /// `INFO {"server_id":...,"max_payload":N` (no closing brace).
    let prefix: [UInt8]
    /// `,"domain":"..."` when JetStream has a domain (it follows `client_ip` in 2.9.10's order).
    let domain: [UInt8]

    init(serverID: String, serverName: String, host: String, port: Int, authRequired: Bool, maxPayload: Int,
         jetStream: Bool = false, domain: String = "", headers: Bool = true) {
        var json = GoJSONObject()
        json.add("server_id", serverID)
        json.add("server_name", serverName)
        json.add("version", ServerVersion.compatible)
        json.add("proto", 1)
        json.add("go", ServerVersion.runtime)
        json.add("host", host)
        json.add("port", port)
        json.add("headers", headers)
        if authRequired { json.add("auth_required", true) }
        json.add("max_payload", maxPayload)
        if jetStream { json.add("jetstream", true) }
        var line: [UInt8] = Array("INFO ".utf8)
        line.append(contentsOf: json.bytes)  // still open: per-connection fields follow
        prefix = line
        var domainField: [UInt8] = []
        if jetStream && !domain.isEmpty {
            domainField.append(contentsOf: ",\"domain\":".utf8)
            GoJSONObject.appendQuoted(domain, to: &domainField)
        }
        self.domain = domainField
    }

    /// Appends the complete INFO line for one connection to `sink`.
    /// `nonce` (nkey users configured) follows `client_ip`; `lameDuck` adds `"ldm":true` last, as
    /// 2.9.10's lame duck INFO.
    func write<S: ByteSink>(to sink: inout S, clientID: UInt64, clientIP: String, nonce: String? = nil,
                            lameDuck: Bool = false) {
        prefix.withUnsafeBytes { sink.append($0) }
        sink.append(ascii: ",\"client_id\":")
        sink.append(decimal: clientID)
        var ip: [UInt8] = []
        ip.append(contentsOf: ",\"client_ip\":".utf8)
        GoJSONObject.appendQuoted(clientIP, to: &ip)
        if let nonce {
            ip.append(contentsOf: ",\"nonce\":".utf8)
            GoJSONObject.appendQuoted(nonce, to: &ip)
        }
        ip.append(contentsOf: domain)
        if lameDuck { ip.append(contentsOf: ",\"ldm\":true".utf8) }
        ip.append(contentsOf: "} \r\n".utf8)
        ip.withUnsafeBytes { sink.append($0) }
    }

    /// The INFO line for one connection.
    func line(clientID: UInt64, clientIP: String, nonce: String? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        write(to: &bytes, clientID: clientID, clientIP: clientIP, nonce: nonce)
        return bytes
    }
}
