// Connection events and statistics.

extension NATSClient {
    /// Something that happened to the connection, delivered through ``NATSClient/events``.
    public enum Event: Sendable, Equatable {
        /// The first connection succeeded (server `host:port`).
        case connected(server: String)
        /// The connection was lost; the error says why when known.
        case disconnected(NATSError?)
        /// A new connection is up and every subscription was sent again (server `host:port`).
        case reconnected(server: String)
        /// The server entered lame duck mode and will close this connection soon.
        case lameDuck(server: String)
        /// A subscription reached its pending limits and started dropping messages.
        case slowConsumer(subject: String, dropped: Int)
        /// The server sent `-ERR`.
        case serverError(NATSError)
        /// A subscription could not be restored after a reconnect; it was ended with this error.
        case resubscribeFailed(subject: String, reason: String)
        /// Servers announced in INFO `connect_urls` were added to the server list.
        case discoveredServers([String])
        /// Publishes buffered while disconnected were discarded because the client closed before reconnecting.
        case bufferedPublishesDiscarded(messages: Int, bytes: Int)
        /// The client closed; the error says why when it was not a call to close or drain.
        case closed(NATSError?)
    }

    /// Counters of the client's traffic since it was created.
    public struct Statistics: Sendable, Equatable {
        /// Messages received (MSG and HMSG).
        public var inMessages: UInt64 = 0
        /// Payload and header bytes received.
        public var inBytes: UInt64 = 0
        /// Messages published.
        public var outMessages: UInt64 = 0
        /// Payload and header bytes published.
        public var outBytes: UInt64 = 0
        /// Successful reconnects.
        public var reconnects: UInt64 = 0
    }
}
