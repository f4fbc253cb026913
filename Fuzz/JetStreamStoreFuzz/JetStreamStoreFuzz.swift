// libFuzzer target for the JetStream file store's record reader and recovery: built by scripts/fuzz.sh
// over the JetStream module (built with -enable-testing, so the target reaches its internals). The
// input becomes one or two block files; opening the store must either throw a StreamStoreError or
// give a store whose state holds together, that takes a new message, and that reopens to the same
// state plus that message.
//
// The first input byte is the configuration: bit 0 splits the rest into two blocks (at a point
// taken from bits 2-7), bit 1 reseals every record-shaped stretch with a valid checksum so the
// fuzzer gets past the checksum to the field checks behind it.
#if canImport(Glibc)
import Glibc
#endif
@testable import JetStream

/// A fresh directory, in memory (/dev/shm) where there is one: the store fsyncs on open and close,
/// which on a disk would bound the run to a few hundred inputs a second.
private func fuzzDirectory() -> String {
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    var template = Array("\(base)/js-store-fuzz-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(made != nil, "mkdtemp failed: errno \(errno)")
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func removeDirectory(_ path: String) {
    if let names = try? BlockIO.list(path) {
        for name in names { unlink(path + "/" + name) }
    }
    rmdir(path)
}

private func writeFile(_ path: String, _ bytes: ArraySlice<UInt8>) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "open \(path): errno \(errno)")
    defer { close(fd) }
    var offset = bytes.startIndex
    while offset < bytes.endIndex {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        precondition(n > 0, "write \(path): errno \(errno)")
        offset += n
    }
}

/// Rewrites the checksum of every stretch whose length field fits in what is left. The sequence
/// field keeps its kind bits and its low 20 bits only: the store's index takes 24 bytes per sequence
/// from the first to the last, so a resealed record with a sequence in the billions would only find
/// that (known, reported) memory bound again and again; records the writer made never jump so far.
private func reseal(_ bytes: inout [UInt8]) {
    var offset = 0
    while offset + FileBackend.fixedSize <= bytes.count {
        let word = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        let length = Int(word & ~FileBackend.headersFlag)
        guard length >= FileBackend.fixedSize, offset + length <= bytes.count else { return }
        let rawSequence = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset + 4, as: UInt64.self)) }
        let bounded = rawSequence & (~FileBackend.sequenceMask | 0xF_FFFF)
        withUnsafeBytes(of: bounded.littleEndian) { bytes.replaceSubrange((offset + 4)..<(offset + 12), with: $0) }
        let hash = bytes.withUnsafeBytes { RecordHash.hash(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + length - 8)])) }
        withUnsafeBytes(of: hash.littleEndian) { bytes.replaceSubrange((offset + length - 8)..<(offset + length), with: $0) }
        offset += length
    }
}

/// Every sequence in the state's range either loads or is reported missing; as many load as the
/// state counts (bounded so a fuzzed sequence range cannot make one input take minutes).
private func checkConsistent(_ store: StreamStore) {
    let state = store.state
    guard state.messages > 0 else { return }
    precondition(state.firstSequence <= state.lastSequence, "first \(state.firstSequence) > last \(state.lastSequence)")
    let span = state.lastSequence - state.firstSequence + 1
    precondition(state.messages <= span, "\(state.messages) messages in \(span) sequences")
    guard span <= 100_000 else { return }
    var loaded: UInt64 = 0
    for sequence in state.firstSequence...state.lastSequence {
        do {
            let message = try store.load(sequence)
            precondition(message.sequence == sequence, "load(\(sequence)) returned \(message.sequence)")
            loaded += 1
        } catch .notFound {
        } catch {
            preconditionFailure("load(\(sequence)) threw \(error)")
        }
    }
    precondition(loaded == state.messages, "\(loaded) messages load, the state says \(state.messages)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func jetStreamStoreFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let config = data[0]
    var bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if config & 2 != 0 { reseal(&bytes) }
    let directory = fuzzDirectory()
    defer { removeDirectory(directory) }
    if config & 1 != 0 {
        let split = bytes.count * Int(config >> 2) / 64
        writeFile(directory + "/1.blk", bytes[..<split])
        writeFile(directory + "/2.blk", bytes[split...])
    } else {
        writeFile(directory + "/1.blk", bytes[...])
    }
    let options = FileStoreOptions(blockSize: 4096)
    let store: StreamStore
    do {
        store = try StreamStore(directory: directory, limits: StreamLimits(), options: options)
    } catch {
        // Refusing damage is allowed; crashing is not.
        return 0
    }
    checkConsistent(store)
    let before = store.state
    let added = try? store.store(subject: "fuzz.after", payload: [1, 2, 3], timestamp: before.lastTime + 1)
    store.close()

    // What recovery kept was cut to intact records: the store reopens, with the new message.
    let again: StreamStore
    do {
        again = try StreamStore(directory: directory, limits: StreamLimits(), options: options)
    } catch {
        preconditionFailure("a store that opened does not reopen: \(error)")
    }
    defer { again.close() }
    checkConsistent(again)
    let after = again.state
    if let added {
        precondition(after.lastSequence == added && after.messages == before.messages + 1,
                     "after reopening: \(after), before \(before), added \(added)")
        precondition((try? again.load(added))?.payload == [1, 2, 3], "the message stored after recovery is lost")
    } else {
        precondition(after == before, "after reopening: \(after), before \(before)")
    }
    return 0
}
