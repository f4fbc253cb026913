"""nats-py responder: answers COUNT requests on SUBJECT with b"py:" + payload (and echoes a header).

Usage: responder.py URL SUBJECT COUNT. Prints "ready" once its subscription is confirmed.
"""
import asyncio
import sys

import nats


async def main() -> None:
    url, subject, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    nc = await nats.connect(url)
    done = asyncio.Event()
    answered = 0

    async def handler(msg):
        nonlocal answered
        headers = {"X-Responder": "nats-py"}
        if msg.headers and "X-Request" in msg.headers:
            headers["X-Echo"] = msg.headers["X-Request"]
        await nc.publish(msg.reply, b"py:" + msg.data, headers=headers)
        answered += 1
        if answered >= count:
            done.set()

    await nc.subscribe(subject, cb=handler)
    await nc.flush()
    print("ready", flush=True)
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        await nc.drain()


asyncio.run(main())
