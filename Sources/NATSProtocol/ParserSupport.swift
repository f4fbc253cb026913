// Helpers shared by ClientParser and ServerParser: ASCII sizes, argument splitting into views,
// the bounded split-frame buffer. Nothing here allocates except SplitBuffer when a frame is split.

import Glibc

/// ASCII codes the parsers test for.
@usableFromInline
enum ASCII {
    @usableFromInline static let cr: UInt8 = 0x0D
    @usableFromInline static let lf: UInt8 = 0x0A
    @usableFromInline static let space: UInt8 = 0x20
    @usableFromInline static let tab: UInt8 = 0x09
    @usableFromInline static let quote: UInt8 = 0x27  // '
    @usableFromInline static let zero: UInt8 = 0x30
    @usableFromInline static let nine: UInt8 = 0x39

    /// Upper-cases an ASCII letter (any other byte comes back unchanged).
    @inlinable @inline(__always)
    static func upper(_ b: UInt8) -> UInt8 {
        (b >= 0x61 && b <= 0x7A) ? b &- 0x20 : b
    }

    @inlinable @inline(__always)
    static func isBlank(_ b: UInt8) -> Bool { b == space || b == tab }
}

/// Parses a decimal size the way nats-server 2.9.10 `parseSize` (server/util.go) does: only ASCII digits,
/// at most `maxDigits` of them (2.9.10 allows 9, "999M"), no sign. Returns nil for empty, too long,
/// non-digit input, or a value that would overflow `Int`.
@inlinable @inline(__always)
func parseDecimalSize(_ v: UnsafeRawBufferPointer, maxDigits: Int = 9) -> Int? {
    let n = v.count
    if n == 0 || n > maxDigits { return nil }
    var value = 0
    for i in 0..<n {
        let d = v[i]
        guard d >= ASCII.zero && d <= ASCII.nine else { return nil }
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (s, o2) = m.addingReportingOverflow(Int(d &- ASCII.zero))
        if o1 || o2 { return nil }
        value = s
    }
    return value
}

/// An empty view: "absent" in every handler callback.
@inlinable var emptyView: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

/// Up to five argument views cut out of a control line (HMSG with a reply has five), plus how many
/// arguments the line really had (`count` keeps counting past five so callers can reject a wrong argument
/// count). No allocation.
@usableFromInline
struct ArgViews {
    @usableFromInline var a0 = emptyView
    @usableFromInline var a1 = emptyView
    @usableFromInline var a2 = emptyView
    @usableFromInline var a3 = emptyView
    @usableFromInline var a4 = emptyView
    @usableFromInline var count = 0

    @inlinable init() {}

    @inlinable @inline(__always)
    subscript(i: Int) -> UnsafeRawBufferPointer {
        switch i {
        case 0: return a0
        case 1: return a1
        case 2: return a2
        case 3: return a3
        case 4: return a4
        default: return emptyView
        }
    }

    @inlinable @inline(__always)
    mutating func append(_ v: UnsafeRawBufferPointer) {
        switch count {
        case 0: a0 = v
        case 1: a1 = v
        case 2: a2 = v
        case 3: a3 = v
        case 4: a4 = v
        default: break
        }
        count += 1
    }

    /// Splits `line` on runs of spaces and tabs (and also CR and LF when `crlfSeparates`, as 2.9.10's
    /// `splitArg` does for SUB/UNSUB; its PUB/HPUB splitter only knows space and tab).
    @inlinable @inline(__always)
    static func split(_ line: UnsafeRawBufferPointer, crlfSeparates: Bool) -> ArgViews {
        var out = ArgViews()
        guard let base = line.baseAddress else { return out }
        var start = -1
        let n = line.count
        var i = 0
        while i < n {
            if start >= 0 {
                // Inside an argument: skip 8 bytes at a time while none is <= 0x20 (every separator
                // is). The lowest flagged byte of `low` is exact (borrows only run upwards).
                while i &+ 8 <= n {
                    let w = UInt64(littleEndian: (base + i).loadUnaligned(as: UInt64.self))
                    let low = (w &- 0x2121_2121_2121_2121) & ~w & 0x8080_8080_8080_8080
                    if low != 0 {
                        i &+= low.trailingZeroBitCount &>> 3
                        break
                    }
                    i &+= 8
                }
                if i >= n { break }
            }
            let b = line[i]
            if b > ASCII.space {
                if start < 0 { start = i }
                i += 1
                continue
            }
            let sep = b == ASCII.space || b == ASCII.tab || (crlfSeparates && (b == ASCII.cr || b == ASCII.lf))
            if sep {
                if start >= 0 {
                    out.append(UnsafeRawBufferPointer(start: base + start, count: i - start))
                    start = -1
                }
            } else if start < 0 {
                start = i
            }
            i += 1
        }
        if start >= 0 {
            out.append(UnsafeRawBufferPointer(start: base + start, count: n - start))
        }
        return out
    }
}

/// A byte range inside the split buffer (offsets, so it survives the buffer growing).
@usableFromInline
struct BufferRange: Sendable {
    @usableFromInline var offset = 0
    @usableFromInline var count = 0

    @inlinable init() {}

    @inlinable init(offset: Int, count: Int) {
        self.offset = offset
        self.count = count
    }
}

/// Storage of `SplitBuffer`: one heap block, grown only on the split-frame path.
@usableFromInline
final class SplitStorage {
    @usableFromInline var base: UnsafeMutableRawPointer?
    @usableFromInline var capacity = 0
    @usableFromInline var count = 0

    init() {}

    deinit { base?.deallocate() }

    @discardableResult
    func grow(to newCapacity: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 1)
        if let old = base {
            if count > 0 { p.copyMemory(from: old, byteCount: count) }
            old.deallocate()
        }
        base = p
        capacity = newCapacity
        return p
    }
}

/// Holds the bytes of one frame that arrived split across `parse` calls: first the control-line
/// arguments, then (for messages) the payload. The owner bounds it: the arguments by the control-line
/// limit, the payload by the size already checked against the payload limit. Views handed out stay
/// valid until the next mutating call. Copy-on-write, so a copied parser never shares live bytes.
@usableFromInline
struct SplitBuffer: @unchecked Sendable {
    @usableFromInline var storage = SplitStorage()
    /// Capacity kept after a frame completes; a larger block is released so an idle connection does not
    /// pin the memory of one big split message.
    let retainLimit: Int

    @usableFromInline
    init(retainLimit: Int = 16 * 1024) {
        self.retainLimit = retainLimit
    }

    @inlinable var count: Int { storage.count }
    @usableFromInline var capacity: Int { storage.capacity }

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = SplitStorage()
            if storage.count > 0, let src = storage.base {
                copy.grow(to: storage.count).copyMemory(from: src, byteCount: storage.count)
                copy.count = storage.count
            }
            storage = copy
        }
    }

    /// Makes room for `total` bytes in all (never shrinks).
    @usableFromInline
    mutating func reserve(total: Int) {
        makeUnique()
        if storage.capacity < total { storage.grow(to: total) }
    }

    @usableFromInline
    mutating func append(_ v: UnsafeRawBufferPointer) {
        guard v.count > 0, let src = v.baseAddress else { return }
        makeUnique()
        let need = storage.count + v.count
        let base: UnsafeMutableRawPointer
        if storage.capacity < need || storage.base == nil {
            base = storage.grow(to: Swift.max(need, Swift.min(storage.capacity * 2, need + 4096), 256))
        } else if let b = storage.base {
            base = b
        } else {
            return
        }
        (base + storage.count).copyMemory(from: src, byteCount: v.count)
        storage.count = need
    }

    /// Forgets the frame; keeps the block only when it is small.
    @usableFromInline
    mutating func reset() {
        makeUnique()
        if storage.capacity > retainLimit {
            storage.base?.deallocate()
            storage.base = nil
            storage.capacity = 0
        }
        storage.count = 0
    }

    /// A view of `count` bytes at `offset` (valid until the next mutating call).
    @inlinable @inline(__always)
    func view(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer {
        guard count > 0, let base = storage.base else { return emptyView }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    @inlinable @inline(__always)
    func view(_ r: BufferRange) -> UnsafeRawBufferPointer { view(r.offset, r.count) }
}

extension UnsafeRawBufferPointer {
    /// The sub-view `r` of this buffer (which must contain it).
    @inlinable @inline(__always)
    func view(_ r: BufferRange) -> UnsafeRawBufferPointer {
        guard r.count > 0, let base = baseAddress else { return emptyView }
        return UnsafeRawBufferPointer(start: base + r.offset, count: r.count)
    }

    /// The sub-view `lo..<hi` (which must lie inside this buffer).
    @inlinable @inline(__always)
    func slice(_ lo: Int, _ hi: Int) -> UnsafeRawBufferPointer {
        guard hi > lo, let base = baseAddress else { return emptyView }
        return UnsafeRawBufferPointer(start: base + lo, count: hi - lo)
    }

    /// Where `sub` (a view into this buffer) sits, as offsets.
    @inlinable @inline(__always)
    func range(of sub: UnsafeRawBufferPointer) -> BufferRange {
        guard sub.count > 0, let base = baseAddress, let s = sub.baseAddress else { return BufferRange() }
        return BufferRange(offset: s - base, count: sub.count)
    }

    /// Index of the first LF at or after `from`, or nil.
    @inlinable @inline(__always)
    func firstLF(from: Int) -> Int? {
        guard from < count, let base = baseAddress else { return nil }
        guard let hit = memchr(base + from, Int32(ASCII.lf), count - from) else { return nil }
        return UnsafeRawPointer(hit) - base
    }

    /// Whether a CR occurs in `lo..<hi`.
    @inlinable @inline(__always)
    func containsCR(_ lo: Int, _ hi: Int) -> Bool {
        var i = lo
        while i < hi {
            if self[i] == ASCII.cr { return true }
            i += 1
        }
        return false
    }

    /// Strips one pair of surrounding single quotes (the `-ERR 'text'` form).
    @inlinable @inline(__always)
    func unquoted() -> UnsafeRawBufferPointer {
        if count >= 2, self[0] == ASCII.quote, self[count - 1] == ASCII.quote, let base = baseAddress {
            return UnsafeRawBufferPointer(start: base + 1, count: count - 2)
        }
        return self
    }
}
