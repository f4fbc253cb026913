"""Shared nats-py helpers for the interop tests."""

import time

import nats.errors


async def barrier(nc):
    """A server round trip that covers everything written before it.

    nats-py 2.16 writes flush()'s PING straight to the transport while SUB/PUB commands wait in its
    pending buffer for the flusher task, so one flush() can overtake them. The first flush lets the
    flusher run; the second PING is queued behind what it wrote.
    """
    await nc.flush()
    await nc.flush()


async def collect(sub, count, timeout=5.0):
    """Reads up to `count` messages from `sub`, stopping at the deadline."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            out.append(await sub.next_msg(timeout=remaining))
        except nats.errors.TimeoutError:
            break
    return out


async def no_more(sub):
    """True when `sub` has nothing pending after a server round trip (the caller flushed before)."""
    try:
        await sub.next_msg(timeout=0.2)
        return False
    except nats.errors.TimeoutError:
        return True
