// ClientConnection, keep-alive: the PING timer, stale-connection detection and the RTT sample.

import EventLoop
import Glibc
import NATSProtocol
import Synchronization

extension ClientConnection {
    // MARK: Keep-alive

    func schedulePingTimer(first: Bool) {
        var delay = broker.options.pingInterval
        if first {
            if delay > .seconds(2) { delay = .seconds(2) }
            // nats-server randomises the first PING by up to 20%.
            let extra = max(0, delay.nanoseconds / 5)
            if extra > 0 { delay += .nanoseconds(Int64.random(in: 0..<extra)) }
        }
        pingTimer = context.loop.schedule(after: delay) { [self] in
            pingTimer = nil
            pingTick()
        }
    }

    func pingTick() {
        guard state == .open else { return }
        let now = LoopContext.now()
        let needRTT = !rttKnown || now &- rttStart > 3_600_000_000_000
        if !needRTT && (activity || clientPinged) {
            broker.logger.debug("\(logPrefix) - Delaying PING due to client activity")
        } else {
            if pingsOut + 1 > broker.options.maxPingsOut {
                broker.logger.debug("\(logPrefix) - Stale Client Connection - Closing")
                sendError(.staleConnection, reason: .staleConnection)
                return
            }
            pingsOut += 1
            rttStart = now
            if tracing { traceOut("PING") }
            appendControl { Encoder.ping(&$0) }
        }
        activity = false
        clientPinged = false
        schedulePingTimer(first: false)
    }
}
