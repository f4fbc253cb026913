"""nats-py publisher: sends COUNT messages with a header to SUBJECT, then flushes.

Usage: publisher.py URL SUBJECT COUNT
"""
import asyncio
import sys

import nats


async def main() -> None:
    url, subject, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    nc = await nats.connect(url)
    for index in range(count):
        await nc.publish(subject, f"py-{index}".encode(), headers={"X-Index": str(index)})
    await nc.flush()
    await nc.close()
    print("done", flush=True)


asyncio.run(main())
