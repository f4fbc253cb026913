extension Consumer {
    /// The ConsumerInfo members as 2.9.10 writes them after a response's `type`: stream_name,
    /// name, created, config, delivered, ack_floor, the counters, and push_bound when bound.
    /// Pull requests that expired meanwhile are answered first (2.9.10's info runs processWaiting).
    func writeInfo(into w: inout JetStreamJSON.ObjectWriter, now: Int64, actions: inout [EngineAction]) {
        var waitingCount = 0
        if isPull { waitingCount = processWaiting(endOfStream: false, now: now, into: &actions).count }
        w.string("stream_name", stream.name)
        w.string("name", name)
        w.time("created", created)
        var c: [UInt8] = []
        config.write(to: &c)
        w.raw("config", c)
        w.raw("delivered", Consumer.sequenceInfo(deliverySequence - 1, streamSequence - 1, lastDelivered))
        w.raw("ack_floor", Consumer.sequenceInfo(ackFloorDelivery, ackFloorStream, lastAcked))
        w.int("num_ack_pending", Int64(pending.count))
        w.int("num_redelivered", Int64(redelivered.count))
        w.int("num_waiting", Int64(waitingCount))
        w.uint("num_pending", recomputePending())
        if isPush && active { w.bool("push_bound", true) }
    }

    private static func sequenceInfo(_ consumer: UInt64, _ stream: UInt64, _ last: Int64) -> [UInt8] {
        var w = JetStreamJSON.ObjectWriter()
        w.uint("consumer_seq", consumer)
        w.uint("stream_seq", stream)
        if last != 0 { w.time("last_active", last) }
        return w.finished()
    }
}
