// ClientConnection, writing: the client's side of OutboundConnection (its pending-flush set, its
// slow-consumer logging) and +OK. The writing itself is OutboundConnection's.

import EventLoop
import NATSProtocol

extension ClientConnection: OutboundConnection {
    func sendOK() {
        if tracing { traceOut("OK") }
        appendControl { Encoder.ok(&$0) }
    }

    @inline(__always)
    func scheduleFlush(on publisher: LoopContext) {
        publisher.pendingFlush.append(self)
    }

    func askOwnerToFlush() {
        context.enqueueRemoteFlush(self)
    }

    /// Called when this connection exceeded max_pending (on any loop). Counts and logs it, then
    /// closes the connection on its own loop, with no -ERR, as 2.9.10 does.
    func slowConsumerDetected() {
        broker.slowConsumers.wrappingAdd(1, ordering: .relaxed)
        broker.logger.notice("\(logPrefix) - Slow Consumer Detected: MaxPending of \(broker.options.maxPending) Exceeded")
        // Deferred to the owner's task queue: this may run on another loop, or inside a delivery
        // loop that still holds a match result naming this connection.
        context.loop.execute { [self] in closeNow(.slowConsumerPendingBytes) }
    }

    func writeDeadlineExceeded(pending: Int) {
        broker.slowConsumers.wrappingAdd(1, ordering: .relaxed)
        broker.logger.notice(
            "\(logPrefix) - Slow Consumer Detected: WriteDeadline of \(goDuration(broker.options.writeDeadline)) exceeded with \(pending) total bytes pending")
        closeNow(.slowConsumerWriteDeadline)
    }
}
