// JetStream in monitoring: the /varz `jetstream` block, /jsz and the /metrics series, with
// nats-server 2.9.10's fields and order.

import HTTPServer
import JetStream

extension Broker {
    /// The /varz `jetstream` object: empty when JetStream is off, else its config and figures.
    func jetStreamVarz() -> GoJSONObject {
        var json = GoJSONObject()
        guard let jetStream else { return json }
        json.add("config", object: jetStreamConfigJSON(jetStream))
        json.add("stats", object: jetStreamFiguresJSON(jetStream.statistics, accounts: 1))
        return json
    }

    private func jetStreamConfigJSON(_ bridge: JetStreamBridge) -> GoJSONObject {
        var config = GoJSONObject()
        config.add("max_memory", bridge.options.maxMemory)
        config.add("max_storage", bridge.options.maxStore)
        config.add("store_dir", bridge.options.storeDirectory)
        if !bridge.options.domain.isEmpty { config.add("domain", bridge.options.domain) }
        return config
    }

    /// 2.9.10's `JetStreamStats`. Only the global account uses JetStream, with no reservations.
    private func jetStreamFiguresJSON(_ stats: JetStreamStatistics, accounts: Int) -> GoJSONObject {
        var json = GoJSONObject()
        appendFigures(stats, accounts: accounts, to: &json)
        return json
    }

    /// `reserved`: what to show instead of the streams' reservations (the account's own, unlimited).
    private func appendFigures(_ stats: JetStreamStatistics, accounts: Int, reserved: String? = nil,
                               to json: inout GoJSONObject) {
        json.add("memory", raw: String(stats.memory))
        json.add("storage", raw: String(stats.storage))
        json.add("reserved_memory", raw: reserved ?? String(stats.reservedMemory))
        json.add("reserved_storage", raw: reserved ?? String(stats.reservedStorage))
        json.add("accounts", accounts)
        json.add("ha_assets", 0)
        var api = GoJSONObject()
        api.add("total", raw: String(stats.apiTotal))
        api.add("errors", raw: String(stats.apiErrors))
        json.add("api", object: api)
    }

    /// /jsz: `accounts`, `streams`, `consumers` and `config` (each `true`/`1`) add the account's,
    /// its streams' and their consumers' details, as 2.9.10's `Jsz`.
    /// - Throws: ``MonitorArgumentError`` for an unknown account in `acc`.
    func jszJSON(_ query: HTTPQuery) throws(MonitorArgumentError) -> String {
        func flag(_ name: String) -> Bool {
            guard let value = query[name] else { return false }
            return value == "1" || value == "true" || value.isEmpty
        }
        var json = GoJSONObject()
        json.add("server_id", serverID)
        json.add("now", WallClock.now().rfc3339)
        guard let jetStream else {
            json.add("disabled", true)
            var config = GoJSONObject()
            config.add("max_memory", 0)
            config.add("max_storage", 0)
            json.add("config", object: config)
            appendFigures(JetStreamStatistics(), accounts: 0, to: &json)
            json.add("streams", 0)
            json.add("consumers", 0)
            json.add("messages", 0)
            json.add("bytes", 0)
            return json.string()
        }
        if let account = query["acc"], !account.isEmpty, account != jetStreamAccount.name {
            throw MonitorArgumentError(message: "account \"\(account)\" not found")
        }
        let stats = jetStream.statistics
        json.add("config", object: jetStreamConfigJSON(jetStream))
        appendFigures(stats, accounts: 1, to: &json)
        json.add("streams", stats.streams)
        json.add("consumers", stats.consumers)
        json.add("messages", raw: String(stats.messages))
        json.add("bytes", raw: String(stats.bytes))
        let streams = flag("streams")
        let consumers = flag("consumers")
        guard flag("accounts") || streams || consumers || query["acc"] != nil else { return json.string() }
        var account = GoJSONObject()
        account.add("name", jetStreamAccount.name)
        account.add("id", jetStreamAccount.name)
        // 2.9.10 shows the account's unlimited reservations as -1 read as an unsigned number.
        appendFigures(stats, accounts: 0, reserved: String(UInt64.max), to: &account)
        if streams || consumers {
            let withConfig = flag("config")
            var list: [String] = []
            for detail in stats.streamDetails {
                var stream = GoJSONObject()
                stream.add("name", detail.name)
                var created: [UInt8] = []
                JetStreamJSON.appendTime(detail.created, to: &created)
                stream.add("created", raw: String(decoding: created, as: UTF8.self))
                var cluster = GoJSONObject()
                cluster.add("leader", serverID)
                stream.add("cluster", object: cluster)
                if withConfig {
                    var config: [UInt8] = []
                    detail.config.write(to: &config)
                    stream.add("config", raw: String(decoding: config, as: UTF8.self))
                }
                var state: [UInt8] = []
                StreamInfoState(detail.state, consumers: detail.consumerCount).write(to: &state)
                stream.add("state", raw: String(decoding: state, as: UTF8.self))
                if consumers {
                    let infos = jetStream.consumerInfos(stream: detail.name).map { String(decoding: $0, as: UTF8.self) }
                    if !infos.isEmpty { stream.add("consumer_detail", raw: "[" + infos.joined(separator: ",") + "]") }
                }
                list.append(stream.string())
            }
            if !list.isEmpty { account.add("stream_detail", raw: "[" + list.joined(separator: ",") + "]") }
        }
        json.add("account_details", raw: "[" + account.string() + "]")
        return json.string()
    }

    /// The JetStream series of /metrics (none when JetStream is off).
    func jetStreamMetrics() -> String {
        guard let jetStream else { return "" }
        let stats = jetStream.statistics
        var text = ""
        func metric(_ name: String, _ type: String, _ help: String, _ value: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        metric("nats_jetstream_streams", "gauge", "JetStream streams.", String(stats.streams))
        metric("nats_jetstream_consumers", "gauge", "JetStream consumers.", String(stats.consumers))
        metric("nats_jetstream_messages", "gauge", "Messages stored in JetStream streams.", String(stats.messages))
        metric("nats_jetstream_bytes", "gauge", "Bytes stored in JetStream streams.", String(stats.bytes))
        metric("nats_jetstream_memory_bytes", "gauge", "Bytes of memory storage used.", String(stats.memory))
        metric("nats_jetstream_storage_bytes", "gauge", "Bytes of file storage used.", String(stats.storage))
        metric("nats_jetstream_max_memory_bytes", "gauge", "Memory storage limit.", String(jetStream.options.maxMemory))
        metric("nats_jetstream_max_storage_bytes", "gauge", "File storage limit.", String(jetStream.options.maxStore))
        metric("nats_jetstream_api_requests_total", "counter", "JetStream API requests.", String(stats.apiTotal))
        metric("nats_jetstream_api_errors_total", "counter", "JetStream API requests answered with an error.",
               String(stats.apiErrors))
        return text
    }
}
