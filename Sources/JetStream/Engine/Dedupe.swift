/// The `Nats-Msg-Id`s a stream has stored within its duplicate window, oldest first, as 2.9.10
/// keeps them (a map for lookups and a queue for expiry by time).
struct Dedupe {
    private struct Entry {
        var id: String
        var sequence: UInt64
        var timestamp: Int64
    }

    private var byID: [String: Entry] = [:]
    private var queue: [Entry] = []
    private var head = 0

    var isEmpty: Bool { byID.isEmpty }

    /// The sequence stored under `id` within `window` of `now`, or nil.
    func lookup(_ id: String, now: Int64, window: Int64) -> UInt64? {
        guard let entry = byID[id], now - entry.timestamp < window else { return nil }
        return entry.sequence
    }

    mutating func record(_ id: String, sequence: UInt64, timestamp: Int64) {
        let entry = Entry(id: id, sequence: sequence, timestamp: timestamp)
        byID[id] = entry
        queue.append(entry)
    }

    /// Forgets the ids older than `window` at `now`.
    mutating func expire(now: Int64, window: Int64) {
        while head < queue.count, now - queue[head].timestamp >= window {
            let id = queue[head].id
            // A newer entry of the same id (stored again after this one expired) stays.
            if byID[id]?.timestamp == queue[head].timestamp { byID[id] = nil }
            head += 1
        }
        // Drop the consumed front once it is most of the array, so expiry stays amortised O(1).
        if head > 1024 && 2 * head > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        if head == queue.count {
            queue.removeAll(keepingCapacity: queue.capacity <= 1024)
            head = 0
        }
    }

    /// When the oldest id leaves the window.
    func nextExpiry(window: Int64) -> Int64? {
        head < queue.count ? queue[head].timestamp + window : nil
    }

    mutating func removeAll() {
        byID = [:]
        queue = []
        head = 0
    }
}

/// Header lookups as 2.9.10's getHeader does them: the first occurrence of `name` in the block
/// counts, only when it starts a line and is followed by `:`; leading spaces of the value are
/// skipped and the value runs to the end of its line. Names match exactly (case matters).
enum HeaderBlock {
    /// The value of `name`, or nil when absent (or empty, which 2.9.10 treats as absent).
    static func value(_ name: StaticString, in block: [UInt8]) -> ArraySlice<UInt8>? {
        let count = block.count
        let keyLength = name.utf8CodeUnitCount
        guard count > keyLength + 2 else { return nil }
        return name.withUTF8Buffer { key -> ArraySlice<UInt8>? in
            let first = key[0]
            var i = 0
            let last = count - keyLength
            while i <= last {
                if block[i] == first {
                    var k = 1
                    while k < keyLength && block[i + k] == key[k] { k += 1 }
                    if k == keyLength {
                        // The first occurrence decides, as in 2.9.10.
                        guard i >= 2, block[i - 1] == 0x0A, block[i - 2] == 0x0D else { return nil }
                        var index = i + keyLength
                        guard index < count, block[index] == UInt8(ascii: ":") else { return nil }
                        index += 1
                        while index < count && block[index] == 0x20 { index += 1 }
                        var end = index
                        while end < count && !(block[end] == 0x0D && end < count - 1 && block[end + 1] == 0x0A) { end += 1 }
                        return end > index ? block[index..<end] : nil
                    }
                }
                i += 1
            }
            return nil
        }
    }

    static func string(_ name: StaticString, in block: [UInt8]) -> String? {
        value(name, in: block).map { String(decoding: $0, as: UTF8.self) }
    }

    /// A sequence header as 2.9.10 parses it (parseInt64: digits only, else -1, read as a uint64).
    static func sequence(_ name: StaticString, in block: [UInt8]) -> UInt64? {
        guard let digits = value(name, in: block) else { return nil }
        var n: UInt64 = 0
        for d in digits {
            guard d >= 0x30 && d <= 0x39 else { return UInt64.max }
            let (m, o1) = n.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(d - 0x30))
            if o1 || o2 { return UInt64.max }
            n = s
        }
        return n
    }

    /// `block` with `name: value` added before its closing blank line (2.9.10's genHeader), or a
    /// new block holding only it.
    static func appending(_ name: String, _ value: String, to block: [UInt8]) -> [UInt8] {
        var out: [UInt8]
        if block.count > 2 {
            out = Array(block[..<(block.count - 2)])
        } else {
            out = Array("NATS/1.0\r\n".utf8)
        }
        out.append(contentsOf: name.utf8)
        out.append(contentsOf: ": ".utf8)
        out.append(contentsOf: value.utf8)
        out.append(contentsOf: "\r\n\r\n".utf8)
        return out
    }
}
