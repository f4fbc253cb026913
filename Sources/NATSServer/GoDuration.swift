// Durations printed as Go prints them, for log lines that match nats-server's.

/// A duration as Go prints one in nats-server's logs: `10s`, `250ms`, `1m30s`.
func goDuration(_ duration: Duration) -> String {
    let nanos = duration.nanoseconds
    if nanos % 1_000_000_000 != 0 {
        if nanos < 1_000_000_000 && nanos % 1_000_000 == 0 { return "\(nanos / 1_000_000)ms" }
        return "\(Double(nanos) / 1e9)s"
    }
    let seconds = nanos / 1_000_000_000
    if seconds < 60 { return "\(seconds)s" }
    let minutes = seconds / 60
    if minutes < 60 { return "\(minutes)m\(seconds % 60)s" }
    return "\(minutes / 60)h\(minutes % 60)m\(seconds % 60)s"
}
