// Durations printed as Go prints them, for log lines that match nats-server's.

import Formats

/// A duration as Go prints one in nats-server's logs: `10s`, `250ms`, `1m30s`.
func goDuration(_ duration: Duration) -> String {
    GoDuration.string(duration.nanoseconds)
}
