"""A nats-py micro service (ADR-32) for our discovery helpers: name py-svc, endpoint py.svc.echo.

Usage: micro_service.py URL. Prints "ready" once it is registered; stops after 30 s or on stdin EOF.
"""
import asyncio
import sys

import nats
import nats.micro


async def main() -> None:
    nc = await nats.connect(sys.argv[1])
    service = await nats.micro.add_service(nc, name="py-svc", version="2.0.1", description="python echo",
                                           metadata={"lang": "python"})

    async def echo(request):
        await request.respond(b"py-svc:" + request.data)

    await service.add_endpoint(name="echo", subject="py.svc.echo", handler=echo)
    await nc.flush()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), timeout=30)
    except asyncio.TimeoutError:
        pass
    await service.stop()
    await nc.close()


asyncio.run(main())
