"""Reconnect after a broker restart on the same port, and a configured max_payload, through nats-py."""

import asyncio

import nats
import nats.errors
import pytest

from conftest import BROKERS, Broker, run
from helpers import barrier, collect


@pytest.mark.parametrize("kind", BROKERS)
def test_client_reconnects_after_broker_restart_and_subscriptions_work_again(kind):
    broker = Broker(kind).start()
    try:
        async def body():
            disconnected = asyncio.Event()
            reconnected = asyncio.Event()

            async def on_disconnect():
                disconnected.set()

            async def on_reconnect():
                reconnected.set()

            nc = await nats.connect(broker.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1,
                                    disconnected_cb=on_disconnect, reconnected_cb=on_reconnect)
            try:
                sub = await nc.subscribe("after.restart")
                await barrier(nc)
                await nc.publish("after.restart", b"before")
                await barrier(nc)
                assert [m.data for m in await collect(sub, 1)] == [b"before"]

                await asyncio.to_thread(broker.stop)
                await asyncio.wait_for(disconnected.wait(), 10)
                await asyncio.to_thread(broker.restart)
                await asyncio.wait_for(reconnected.wait(), 20)

                # nats-py replays the SUB on reconnect; the new broker must route to it.
                await barrier(nc)
                await nc.publish("after.restart", b"after")
                await barrier(nc)
                assert [m.data for m in await collect(sub, 1)] == [b"after"]
            finally:
                await nc.close()
        run(body(), timeout=60)
    finally:
        broker.close()


@pytest.mark.parametrize("kind", BROKERS)
def test_configured_max_payload_is_announced_and_enforced_by_the_client(kind):
    """Needs a config file (max_payload is a config-only limit): runs against our broker when it has
    the `config` capability (see conftest.capabilities)."""
    broker = Broker(kind, config_lines=["max_payload: 1KB"]).start()
    try:
        async def body():
            nc = await nats.connect(broker.url, allow_reconnect=False)
            try:
                assert nc.max_payload == 1024
                sub = await nc.subscribe("small")
                await barrier(nc)
                with pytest.raises(nats.errors.MaxPayloadError):
                    await nc.publish("small", b"x" * 1025)
                await nc.publish("small", b"y" * 1024)
                await barrier(nc)
                msgs = await collect(sub, 1)
                assert len(msgs) == 1 and msgs[0].data == b"y" * 1024
            finally:
                await nc.close()
        run(body())
    finally:
        broker.close()
