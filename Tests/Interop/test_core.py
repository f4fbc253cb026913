"""Core NATS behaviour seen through nats-py, against our broker and nats-server 2.9.10."""

import asyncio
import socket
import time

import nats
import nats.errors
import pytest

from conftest import run
from helpers import barrier, collect, no_more


def test_connect_reports_server_info(broker):
    async def body():
        nc = await nats.connect(broker.url, allow_reconnect=False)
        try:
            assert nc.is_connected
            assert nc._server_info["proto"] == 1
            assert nc._server_info["headers"] is True
            assert nc.max_payload == 1048576
            assert nc._server_info["port"] == broker.port
        finally:
            await nc.close()
    run(body())


def test_publish_subscribe_round_trip(broker):
    async def body():
        sub_nc = await nats.connect(broker.url)
        pub_nc = await nats.connect(broker.url)
        try:
            sub = await sub_nc.subscribe("greet.one")
            await barrier(sub_nc)
            for i in range(10):
                await pub_nc.publish("greet.one", f"hello {i}".encode(), reply="answer.here")
            await barrier(pub_nc)
            msgs = await collect(sub, 10)
            assert [m.data for m in msgs] == [f"hello {i}".encode() for i in range(10)]
            assert all(m.subject == "greet.one" and m.reply == "answer.here" for m in msgs)
        finally:
            await sub_nc.close()
            await pub_nc.close()
    run(body())


def test_wildcards_star_and_greater(broker):
    async def body():
        nc = await nats.connect(broker.url)
        try:
            star = await nc.subscribe("orders.*")
            tail = await nc.subscribe("orders.>")
            await barrier(nc)
            for subject in ["orders.new", "orders.eu.paid", "orders", "other.new"]:
                await nc.publish(subject, subject.encode())
            await barrier(nc)
            star_got = [m.subject for m in await collect(star, 1)]
            tail_got = sorted(m.subject for m in await collect(tail, 2))
            assert star_got == ["orders.new"]
            assert tail_got == ["orders.eu.paid", "orders.new"]
            assert await no_more(star)
            assert await no_more(tail)
        finally:
            await nc.close()
    run(body())


def test_queue_group_delivers_each_message_once_across_members(broker):
    async def body():
        members = [await nats.connect(broker.url) for _ in range(3)]
        watcher_nc = await nats.connect(broker.url)
        pub_nc = await nats.connect(broker.url)
        try:
            received = []
            per_member = [0, 0, 0]

            def handler_for(index):
                async def handler(msg):
                    received.append(int(msg.data))
                    per_member[index] += 1
                return handler

            for index, nc in enumerate(members):
                await nc.subscribe("work", queue="workers", cb=handler_for(index))
            watcher = await watcher_nc.subscribe("work")
            for nc in members + [watcher_nc]:
                await barrier(nc)
            total = 60
            for i in range(total):
                await pub_nc.publish("work", str(i).encode())
            await barrier(pub_nc)
            deadline = time.monotonic() + 10
            while len(received) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            # A round trip on every member: anything still in flight (a duplicate) arrives before the PONG.
            for nc in members:
                await barrier(nc)
            await asyncio.sleep(0)
            assert sorted(received) == list(range(total))
            assert sum(per_member) == total
            seen_by_watcher = [int(m.data) for m in await collect(watcher, total)]
            assert seen_by_watcher == list(range(total))
        finally:
            for nc in members + [watcher_nc, pub_nc]:
                await nc.close()
    run(body())


def test_request_reply(broker):
    async def body():
        svc = await nats.connect(broker.url)
        client = await nats.connect(broker.url)
        try:
            async def handler(msg):
                await msg.respond(b"echo:" + msg.data)
            await svc.subscribe("svc.echo", cb=handler)
            await barrier(svc)
            replies = [await client.request("svc.echo", f"r{i}".encode(), timeout=5) for i in range(5)]
            assert [r.data for r in replies] == [f"echo:r{i}".encode() for i in range(5)]
        finally:
            await svc.close()
            await client.close()
    run(body())


def test_no_responders_raises(broker):
    async def body():
        nc = await nats.connect(broker.url)
        try:
            with pytest.raises(nats.errors.NoRespondersError):
                await nc.request("nobody.listens", b"anyone?", timeout=5)
        finally:
            await nc.close()
    run(body())


def test_headers_round_trip_through_nats_py(broker):
    async def body():
        nc = await nats.connect(broker.url)
        try:
            sub = await nc.subscribe("hdr.test")
            await barrier(nc)
            headers = {"X-Trace-Id": "abc-123", "Content-Type": "text/plain", "lower-case": "v"}
            await nc.publish("hdr.test", b"body", headers=headers)
            await barrier(nc)
            msgs = await collect(sub, 1)
            assert len(msgs) == 1
            assert msgs[0].data == b"body"
            assert msgs[0].headers == headers
        finally:
            await nc.close()
    run(body())


def raw_connect(port, connect_json):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rb")
    assert f.readline().startswith(b"INFO ")
    s.sendall(b"CONNECT " + connect_json + b"\r\nPING\r\n")
    assert f.readline() == b"PONG\r\n"
    return s, f


def test_multi_valued_headers_are_preserved_byte_for_byte(broker):
    block = b"NATS/1.0\r\nA: b\r\nA: c\r\nx-Mixed-Case: 1\r\n\r\n"
    sub, sub_f = raw_connect(broker.port, b'{"verbose":false,"headers":true}')
    pub, pub_f = raw_connect(broker.port, b'{"verbose":false,"headers":true}')
    try:
        sub.sendall(b"SUB h.multi 1\r\nPING\r\n")
        assert sub_f.readline() == b"PONG\r\n"
        total = len(block) + 2
        pub.sendall(b"HPUB h.multi %d %d\r\n" % (len(block), total) + block + b"hi\r\nPING\r\n")
        assert pub_f.readline() == b"PONG\r\n"
        assert sub_f.readline() == b"HMSG h.multi 1 %d %d\r\n" % (len(block), total)
        assert sub_f.read(total + 2) == block + b"hi\r\n"
    finally:
        sub.close()
        pub.close()


def test_multi_valued_headers_reach_nats_py(broker):
    async def body():
        nc = await nats.connect(broker.url)
        pub, pub_f = raw_connect(broker.port, b'{"verbose":false,"headers":true}')
        try:
            sub = await nc.subscribe("h.py")
            await barrier(nc)
            block = b"NATS/1.0\r\nA: b\r\nA: c\r\nX: 1\r\n\r\n"
            pub.sendall(b"HPUB h.py %d %d\r\n" % (len(block), len(block) + 2) + block + b"hi\r\nPING\r\n")
            assert pub_f.readline() == b"PONG\r\n"
            msgs = await collect(sub, 1)
            assert len(msgs) == 1 and msgs[0].data == b"hi"
            # nats-py keeps one value per key; both brokers must hand it the same block.
            assert msgs[0].headers["X"] == "1"
            assert msgs[0].headers["A"] in ("b", "c")
        finally:
            pub.close()
            await nc.close()
    run(body())


def test_max_payload_from_info_is_enforced_by_the_client(broker):
    async def body():
        nc = await nats.connect(broker.url)
        try:
            assert nc.max_payload == 1048576
            sub = await nc.subscribe("big")
            await barrier(nc)
            with pytest.raises(nats.errors.MaxPayloadError):
                await nc.publish("big", b"x" * (nc.max_payload + 1))
            await nc.publish("big", b"y" * nc.max_payload)
            await barrier(nc)
            msgs = await collect(sub, 1, timeout=10)
            assert len(msgs) == 1 and len(msgs[0].data) == nc.max_payload
        finally:
            await nc.close()
    run(body())


def test_unsubscribe_after_max_messages(broker):
    async def body():
        nc = await nats.connect(broker.url)
        try:
            sub = await nc.subscribe("limited")
            await sub.unsubscribe(limit=3)
            await barrier(nc)
            for i in range(6):
                await nc.publish("limited", str(i).encode())
            await barrier(nc)
            msgs = await collect(sub, 6, timeout=2)
            assert [m.data for m in msgs] == [b"0", b"1", b"2"]
        finally:
            await nc.close()
    run(body())


def test_no_echo_hides_own_messages_only(broker):
    async def body():
        quiet = await nats.connect(broker.url, no_echo=True)
        other = await nats.connect(broker.url)
        try:
            own = await quiet.subscribe("echo.test")
            theirs = await other.subscribe("echo.test")
            await barrier(quiet)
            await barrier(other)
            await quiet.publish("echo.test", b"from-quiet")
            await barrier(quiet)
            await other.publish("echo.test", b"from-other")
            await barrier(other)
            assert [m.data for m in await collect(own, 1)] == [b"from-other"]
            assert sorted(m.data for m in await collect(theirs, 2)) == [b"from-other", b"from-quiet"]
        finally:
            await quiet.close()
            await other.close()
    run(body())


def test_drain_delivers_pending_messages_then_closes(broker):
    async def body():
        nc = await nats.connect(broker.url)
        pub = await nats.connect(broker.url)
        got = []
        try:
            async def handler(msg):
                got.append(msg.data)
            await nc.subscribe("drain.test", cb=handler)
            await barrier(nc)
            for i in range(50):
                await pub.publish("drain.test", str(i).encode())
            await barrier(pub)
            await barrier(nc)
            await nc.drain()
            assert nc.is_closed
            assert got == [str(i).encode() for i in range(50)]
        finally:
            if not nc.is_closed:
                await nc.close()
            await pub.close()
    run(body())
