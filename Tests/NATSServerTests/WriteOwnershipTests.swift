// WriteOwnership as a plain value: every transition, and the sequences the broker's loops go
// through (the owner's flush, a publisher's loop writing directly, its hand-back after a short
// write or EAGAIN, and the owner closing during another loop's writev).

import Testing
@testable import NATSServer

@Suite("Write ownership")
struct WriteOwnershipTests {
    @Test func aFlushIsRequestedOnceUntilAWriterTakesIt() {
        var state = WriteOwnership()
        #expect(state.requestFlush() == true)
        #expect(state.requestFlush() == false)
        #expect(state.flushQueued)
        #expect(state.beginWrite(by: .owner, hasBytes: true) == .write)
        #expect(!state.flushQueued)
        // Bytes appended during the write ask for a new flush.
        #expect(state.requestFlush() == true)
    }

    @Test func anEmptyBufferTakesTheFlushWithoutWriting() {
        var state = WriteOwnership()
        _ = state.requestFlush()
        #expect(state.beginWrite(by: .owner, hasBytes: false) == .empty)
        #expect(state.writer == .none)
        #expect(!state.flushQueued)
    }

    @Test func theOwnerWritesEverything() {
        var state = WriteOwnership()
        _ = state.requestFlush()
        #expect(state.beginWrite(by: .owner, hasBytes: true) == .write)
        #expect(state.writer == .owner)
        #expect(state.endWrite(written: 100, requested: 100) == .consume(again: false, handBack: false))
        #expect(state == WriteOwnership())
    }

    @Test func aSecondWriterMakesTheFirstWriteAgain() {
        var state = WriteOwnership()
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
        #expect(state.beginWrite(by: .owner, hasBytes: true) == .busy)
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .busy)
        #expect(state.writing == .otherLoop(rewrite: true, closePending: false))
        #expect(state.endWrite(written: 10, requested: 10) == .consume(again: true, handBack: false))
        #expect(!state.rewrite)
        // The request was served: the next round goes on without another "again".
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
        #expect(state.endWrite(written: 10, requested: 10) == .consume(again: false, handBack: false))
    }

    @Test func aShortWriteByTheOwnerKeepsItsOwnership() {
        var state = WriteOwnership()
        #expect(state.beginWrite(by: .owner, hasBytes: true) == .write)
        #expect(state.endWrite(written: 40, requested: 100) == .consume(again: false, handBack: false))
        #expect(!state.ownerOnly)
        // The owner then waits for EPOLLOUT, and other loops keep out until it has drained.
        state.ownerWaitsForWritable()
        #expect(state.ownerOnly)
    }

    @Test func aShortWriteFromAnotherLoopHandsTheSocketToItsOwner() {
        var state = WriteOwnership()
        _ = state.requestFlush()
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
        #expect(state.endWrite(written: 40, requested: 100) == .consume(again: false, handBack: true))
        #expect(state.ownerOnly)
        // Marked queued: the owner's flush is on its way, so new bytes need no other request.
        #expect(state.flushQueued)
        #expect(state.requestFlush() == false)
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .ownerOnly)
        #expect(state.beginWrite(by: .owner, hasBytes: true) == .write)
        #expect(state.endWrite(written: 60, requested: 60) == .consume(again: false, handBack: false))
        // Still owner-only until the owner saw the buffer drained.
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .ownerOnly)
        state.drainedByOwner()
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
    }

    @Test func eagainFromAnotherLoopHandsTheSocketToItsOwner() {
        var state = WriteOwnership()
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
        #expect(state.endWrite(written: 0, requested: 100) == .consume(again: false, handBack: true))
        #expect(state.ownerOnly)
        #expect(state.writer == .none)
    }

    @Test func anotherLoopThatUsedItsRoundsHandsBackAQueuedFlush() {
        var state = WriteOwnership()
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
        #expect(state.endWrite(written: 100, requested: 100) == .consume(again: false, handBack: false))
        state.handBackToOwner()
        #expect(state.flushQueued)
        #expect(!state.ownerOnly)
    }

    @Test func theOwnerWaitingForWritableDropsTheQueuedFlush() {
        var state = WriteOwnership()
        state.ownerWaitsForWritable()
        _ = state.requestFlush()
        state.flushDeferredToWritable()
        #expect(!state.flushQueued)
        #expect(state.requestFlush() == true)
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .ownerOnly)
    }

    @Test func drainingIsOwnerOnlyAndQueuesOneFlush() {
        var state = WriteOwnership()
        #expect(state.beginDraining() == true)
        #expect(state.ownerOnly)
        var queued = WriteOwnership()
        _ = queued.requestFlush()
        #expect(queued.beginDraining() == false)
        #expect(queued.beginWrite(by: .otherLoop, hasBytes: true) == .ownerOnly)
    }

    @Test func closingWithNoWriterClosesNow() {
        var state = WriteOwnership()
        #expect(state.close() == .closeNow)
        #expect(state.ownerOnly)
        #expect(!state.closePending)
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .ownerOnly)
    }

    @Test func closingDuringAnotherLoopsWritevLeavesTheDescriptorToThatWriter() {
        var state = WriteOwnership()
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
        #expect(state.close() == .leftToWriter)
        #expect(state.closePending)
        // Whatever the write did, the writer drops the buffer and closes the descriptor.
        #expect(state.endWrite(written: 40, requested: 100) == .closeDescriptor)
        #expect(!state.closePending)
        #expect(state.writer == .none)
        // Nobody else writes the closed socket.
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .ownerOnly)
    }

    @Test func aFlushAskedForAfterTheCloseDoesNotKeepTheDescriptorOpen() {
        var state = WriteOwnership()
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
        #expect(state.close() == .leftToWriter)
        #expect(state.beginWrite(by: .owner, hasBytes: true) == .busy)
        #expect(state.writing == .otherLoop(rewrite: true, closePending: true))
        #expect(state.endWrite(written: 100, requested: 100) == .closeDescriptor)
        #expect(state.writing == .idle)
    }

    @Test func theOwnerNeverLeavesItsOwnCloseToAWriter() {
        // The owner's close and its writev run on one thread: a close never lands inside its own
        // write, so only another loop's writer defers the descriptor.
        var state = WriteOwnership()
        #expect(state.beginWrite(by: .owner, hasBytes: true) == .write)
        #expect(state.close() == .closeNow)
        #expect(!state.closePending)
        #expect(state.ownerOnly)
    }

    @Test func aFlushAskedForBeforeTheCloseDoesNotKeepTheDescriptorOpen() {
        var state = WriteOwnership()
        #expect(state.beginWrite(by: .otherLoop, hasBytes: true) == .write)
        #expect(state.beginWrite(by: .owner, hasBytes: true) == .busy)
        #expect(state.close() == .leftToWriter)
        #expect(state.endWrite(written: 100, requested: 100) == .closeDescriptor)
    }
}
