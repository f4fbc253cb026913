// ByteSink: where the encoder writes. The broker's outbound buffer and `[UInt8]` both conform.

/// A destination for encoded protocol bytes.
///
/// Conformers append bytes in order; they never reorder or drop. The broker's outbound
/// chunk buffer conforms so that encoding writes straight into the memory that `writev` sends.
public protocol ByteSink {
    /// Appends every byte of `bytes`, in order. `bytes` is valid only during the call.
    mutating func append(_ bytes: UnsafeRawBufferPointer)
    /// Appends one byte.
    mutating func append(byte: UInt8)
}

extension Array: ByteSink where Element == UInt8 {
    /// Appends every byte of `bytes`.
    @inlinable
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        self.append(contentsOf: bytes)
    }

    /// Appends one byte.
    @inlinable
    public mutating func append(byte: UInt8) {
        self.append(byte)
    }
}

extension ByteSink {
    /// Appends the bytes of a compile-time string (ASCII protocol text such as `"MSG "`).
    @inlinable
    public mutating func append(ascii text: StaticString) {
        if text.hasPointerRepresentation {
            append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        } else {
            // A single-scalar StaticString: encode it as UTF-8.
            let scalar = text.unicodeScalar
            for unit in String(scalar).utf8 { append(byte: unit) }
        }
    }

    /// Appends the UTF-8 bytes of `text`. Not for the hot path (may copy a bridged string).
    @inlinable
    public mutating func append(utf8 text: String) {
        var copy = text
        copy.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends the decimal digits of a non-negative integer, without allocating.
    ///
    /// Negative values are written with a leading `-` (the protocol never needs them,
    /// but the output stays a correct decimal rendering).
    @inlinable
    public mutating func append(decimal value: Int) {
        if value < 0 {
            append(byte: UInt8(ascii: "-"))
            append(decimal: UInt64(value.magnitude))
        } else {
            append(decimal: UInt64(value))
        }
    }

    /// Appends the decimal digits of `value`, without allocating.
    @inlinable
    public mutating func append(decimal value: UInt64) {
        if value < 10 {
            append(byte: UInt8(truncatingIfNeeded: value) &+ 48)
            return
        }
        // 20 digits hold UInt64.max; the tuple lives on the stack.
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { raw in
            var index = raw.count
            var rest = value
            while rest > 0 {
                index -= 1
                raw[index] = UInt8(truncatingIfNeeded: rest % 10) &+ 48
                rest /= 10
            }
            append(UnsafeRawBufferPointer(rebasing: raw[index...]))
        }
    }
}

