"""nats-py's JetStream API (publish, streams, pull and push consumers, acks, ordered consumers, KV and the
object store) against our broker and nats-server 2.9.10, both started with ``-js -sd <tmp>``.

The cases for our broker run when it has the ``jetstream`` capability (see conftest.has_jetstream);
until then they skip. Values asserted here were read from nats-server 2.9.10, so a case that passes
on both brokers shows they answer alike; `test_api_answers_match_between_brokers` also compares the
raw API responses of both brokers field by field, with times and server names taken out.
"""

import asyncio
import json
import os

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from conftest import BROKERS, has_jetstream, jetstream_broker, require_broker, run
from helpers import barrier


@pytest.fixture(scope="module", params=BROKERS)
def js_broker(request):
    """One JetStream broker per kind, shared by the cases of this module (each uses its own stream)."""
    b = jetstream_broker(request.param)
    yield b
    b.close()


async def connect(broker):
    nc = await nats.connect(broker.url, allow_reconnect=False)
    return nc, nc.jetstream(timeout=5)


async def next_or_none(sub, timeout):
    try:
        return await sub.next_msg(timeout=timeout)
    except nats.errors.TimeoutError:
        return None


# Publishing


def test_publish_gets_pub_acks_and_a_repeated_msg_id_is_a_duplicate(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="PUB", subjects=["pub.>"])
            first = await js.publish("pub.a", b"one", headers={"Nats-Msg-Id": "id-1"})
            second = await js.publish("pub.b", b"two")
            again = await js.publish("pub.a", b"one again", headers={"Nats-Msg-Id": "id-1"})
            assert (first.stream, first.seq, first.duplicate) == ("PUB", 1, None)
            assert (second.stream, second.seq) == ("PUB", 2)
            # The duplicate is answered with the original's sequence and stores nothing.
            assert (again.stream, again.seq, again.duplicate) == ("PUB", 1, True)
            info = await js.stream_info("PUB")
            assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (2, 1, 2)
            stored = await js.get_msg("PUB", 1)
            assert (stored.subject, stored.data, stored.seq) == ("pub.a", b"one", 1)
            assert stored.headers == {"Nats-Msg-Id": "id-1"}
        finally:
            await nc.close()
    run(body())


def test_expected_headers_refuse_with_their_err_codes(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="EXP", subjects=["exp.>"])
            await js.publish("exp.a", b"1")
            await js.publish("exp.b", b"2", headers={"Nats-Msg-Id": "m2"})
            ok = await js.publish("exp.a", b"3", headers={"Nats-Expected-Last-Sequence": "2"})
            assert ok.seq == 3
            with pytest.raises(nats.js.errors.APIError) as wrong_seq:
                await js.publish("exp.a", b"x", headers={"Nats-Expected-Last-Sequence": "2"})
            assert (wrong_seq.value.code, wrong_seq.value.err_code) == (400, 10071)
            assert wrong_seq.value.description == "wrong last sequence: 3"
            with pytest.raises(nats.js.errors.APIError) as wrong_subject_seq:
                await js.publish("exp.b", b"x", headers={"Nats-Expected-Last-Subject-Sequence": "1"})
            assert wrong_subject_seq.value.err_code == 10071
            assert wrong_subject_seq.value.description == "wrong last sequence: 2"
            with pytest.raises(nats.js.errors.APIError) as wrong_id:
                await js.publish("exp.a", b"x", headers={"Nats-Expected-Last-Msg-Id": "other"})
            assert wrong_id.value.err_code == 10070
            # The last message (seq 3) carried no id, and the error names that empty id.
            assert wrong_id.value.description == "wrong last msg ID: "
            with pytest.raises(nats.js.errors.APIError) as wrong_stream:
                await js.publish("exp.a", b"x", headers={"Nats-Expected-Stream": "NOPE"})
            assert wrong_stream.value.err_code == 10060
            assert wrong_stream.value.description == "expected stream does not match"
            # None of the refused messages was stored.
            assert (await js.stream_info("EXP")).state.messages == 3
        finally:
            await nc.close()
    run(body())


# Streams


def test_stream_add_info_update_purge_delete(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            created = await js.add_stream(name="CRUD", subjects=["crud.*"], max_msgs=100)
            assert created.config.name == "CRUD"
            assert created.config.subjects == ["crud.*"]
            assert created.config.max_msgs == 100
            assert created.config.max_bytes == -1
            assert created.config.storage == "file"
            assert created.config.retention == "limits"
            assert created.config.duplicate_window == 120.0
            for i in range(5):
                await js.publish(f"crud.{i % 2}", f"m{i}".encode())
            info = await js.stream_info("CRUD")
            # File storage counts 22 + subject + payload + 8 bytes per message: 22 + 6 + 2 + 8.
            assert (info.state.messages, info.state.bytes, info.state.consumer_count) == (5, 5 * 38, 0)

            updated = await js.update_stream(StreamConfig(name="CRUD", subjects=["crud.*", "more.>"], max_msgs=3))
            assert updated.config.subjects == ["crud.*", "more.>"]
            # Lowering max_msgs applies to what is stored.
            assert updated.state.messages == 3 and updated.state.first_seq == 3

            with pytest.raises(nats.js.errors.ServerError) as immutable:
                await js.update_stream(StreamConfig(name="CRUD", subjects=["crud.*"], storage="memory"))
            assert (immutable.value.code, immutable.value.err_code) == (500, 10052)
            assert immutable.value.description == "stream configuration update can not change storage type"

            assert await js.purge_stream("CRUD", subject="crud.0") is True
            assert (await js.stream_info("CRUD")).state.messages == 1
            assert await js.purge_stream("CRUD") is True
            state = (await js.stream_info("CRUD")).state
            assert (state.messages, state.first_seq, state.last_seq) == (0, 6, 5)

            assert await js.delete_stream("CRUD") is True
            with pytest.raises(nats.js.errors.NotFoundError) as gone:
                await js.stream_info("CRUD")
            assert (gone.value.code, gone.value.err_code) == (404, 10059)
        finally:
            await nc.close()
    run(body())


def test_stream_create_errors(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="ONE", subjects=["one.>"])
            with pytest.raises(nats.js.errors.BadRequestError) as overlap:
                await js.add_stream(name="TWO", subjects=["one.x"])
            assert overlap.value.err_code == 10065
            assert overlap.value.description == "subjects overlap with an existing stream"
            with pytest.raises(nats.js.errors.BadRequestError) as in_use:
                await js.add_stream(name="ONE", subjects=["other.>"])
            assert in_use.value.err_code == 10058
            # The same config again is accepted.
            again = await js.add_stream(name="ONE", subjects=["one.>"])
            assert again.config.name == "ONE"
            names = await js.streams_info()
            assert "ONE" in [s.config.name for s in names]
        finally:
            await nc.close()
    run(body())


# Pull consumers


def test_pull_subscribe_fetch_batches_and_times_out_when_empty(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="PULL", subjects=["pull.>"])
            for i in range(10):
                await js.publish("pull.x", f"{i}".encode())
            psub = await js.pull_subscribe("pull.>", durable="worker", stream="PULL")
            first = await psub.fetch(4, timeout=2)
            assert [m.data for m in first] == [b"0", b"1", b"2", b"3"]
            assert all(m.subject == "pull.x" for m in first)
            meta = first[0].metadata
            assert (meta.sequence.stream, meta.sequence.consumer, meta.num_delivered, meta.num_pending) == (1, 1, 1, 9)
            assert (meta.stream, meta.consumer) == ("PULL", "worker")
            for m in first:
                await m.ack()
            # A batch bigger than what is left returns what there is.
            rest = await psub.fetch(20, timeout=1)
            assert [m.data for m in rest] == [f"{i}".encode() for i in range(4, 10)]
            for m in rest:
                await m.ack_sync()
            with pytest.raises(nats.errors.TimeoutError):
                await psub.fetch(1, timeout=0.5)

            info = await js.consumer_info("PULL", "worker")
            assert (info.delivered.consumer_seq, info.delivered.stream_seq) == (10, 10)
            assert (info.ack_floor.consumer_seq, info.ack_floor.stream_seq) == (10, 10)
            assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)
        finally:
            await nc.close()
    run(body())


def test_consumer_info_counts_pending_acks_and_redeliveries(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="COUNT", subjects=["count.>"])
            for i in range(6):
                await js.publish("count.x", f"{i}".encode())
            psub = await js.pull_subscribe("count.>", durable="c", stream="COUNT",
                                           config=ConsumerConfig(ack_wait=30))
            msgs = await psub.fetch(4, timeout=2)
            await msgs[0].ack_sync()
            await msgs[1].ack_sync()
            await msgs[3].ack_sync()
            info = await js.consumer_info("COUNT", "c")
            assert (info.delivered.consumer_seq, info.delivered.stream_seq) == (4, 4)
            assert (info.ack_floor.consumer_seq, info.ack_floor.stream_seq) == (2, 2)
            assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (1, 2, 0)
            # A nak makes the third message deliverable again; the next fetch returns it with the
            # two not yet delivered. (2.9.10 handles acks on their own queue, so their order
            # against the pull request is not fixed.)
            await msgs[2].nak()
            rest = []
            while len(rest) < 3:
                rest += await psub.fetch(3 - len(rest), timeout=2)
            assert sorted(m.data for m in rest) == [b"2", b"4", b"5"]
            assert {m.data: m.metadata.num_delivered for m in rest} == {b"2": 2, b"4": 1, b"5": 1}
            info = await js.consumer_info("COUNT", "c")
            assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (3, 1, 0)
            assert (info.delivered.consumer_seq, info.delivered.stream_seq) == (7, 6)
            for m in rest:
                await m.ack_sync()
            info = await js.consumer_info("COUNT", "c")
            assert (info.ack_floor.stream_seq, info.ack_floor.consumer_seq) == (6, 7)
            assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)
        finally:
            await nc.close()
    run(body())


def test_term_and_in_progress(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="TERM", subjects=["term.>"])
            await js.publish("term.a", b"poison")
            await js.publish("term.a", b"slow")
            psub = await js.pull_subscribe("term.>", durable="t", stream="TERM",
                                           config=ConsumerConfig(ack_wait=1))
            poison, slow = await psub.fetch(2, timeout=2)
            await poison.term()
            # Work in progress pushes the ack deadline out: keep it alive past one ack_wait.
            for _ in range(3):
                await slow.in_progress()
                await asyncio.sleep(0.4)
            await slow.ack_sync()
            # The terminated message never comes back, the acked one neither.
            with pytest.raises(nats.errors.TimeoutError):
                await psub.fetch(1, timeout=1.5)
            info = await js.consumer_info("TERM", "t")
            assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
            assert info.ack_floor.stream_seq == 2
        finally:
            await nc.close()
    run(body())


# Push consumers


def test_push_durable_with_manual_ack_redelivers_after_ack_wait(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="PUSH", subjects=["push.>"])
            for i in range(3):
                await js.publish("push.x", f"{i}".encode())
            sub = await js.subscribe("push.>", durable="pd", stream="PUSH", manual_ack=True,
                                     config=ConsumerConfig(ack_wait=1))
            got = [await sub.next_msg(timeout=2) for _ in range(3)]
            assert [m.data for m in got] == [b"0", b"1", b"2"]
            assert all(m.subject == "push.x" for m in got)
            await got[0].ack()
            await got[2].ack()
            await barrier(nc)
            # The unacknowledged one comes back after ack_wait (1 s), marked as a second delivery.
            again = await sub.next_msg(timeout=5)
            assert again.data == b"1"
            assert again.metadata.num_delivered == 2
            assert again.metadata.sequence.stream == 2
            await again.ack_sync()
            info = await js.consumer_info("PUSH", "pd")
            assert info.config.durable_name == "pd"
            assert info.config.deliver_subject is not None
            assert (info.num_ack_pending, info.num_redelivered, info.ack_floor.stream_seq) == (0, 0, 3)
        finally:
            await nc.close()
    run(body())


def test_push_ephemeral_delivers_new_messages_and_goes_away(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="EPH", subjects=["eph.>"])
            await js.publish("eph.old", b"old")
            sub = await js.subscribe("eph.>", stream="EPH", deliver_policy=DeliverPolicy.NEW)
            await barrier(nc)
            await js.publish("eph.new", b"new")
            msg = await sub.next_msg(timeout=2)
            assert (msg.subject, msg.data) == ("eph.new", b"new")
            consumers = await js.consumers_info("EPH")
            assert len(consumers) == 1
            assert consumers[0].config.durable_name is None
            assert consumers[0].config.ack_policy == AckPolicy.EXPLICIT
            await sub.unsubscribe()
        finally:
            await nc.close()
    run(body())


def test_ordered_consumer_reads_everything_in_order(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            await js.add_stream(name="ORD", subjects=["ord.>"])
            for i in range(50):
                await js.publish(f"ord.{i % 3}", f"{i}".encode())
            sub = await js.subscribe("ord.>", ordered_consumer=True)
            got = []
            while len(got) < 50:
                msg = await sub.next_msg(timeout=3)
                got.append(msg.data)
            assert got == [f"{i}".encode() for i in range(50)]
            await js.publish("ord.1", b"late")
            assert (await sub.next_msg(timeout=3)).data == b"late"
            await sub.unsubscribe()
        finally:
            await nc.close()
    run(body())


# Key-value store


def test_key_value_operations(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            kv = await js.create_key_value(bucket="settings", history=5)
            info = await js.stream_info("KV_settings")
            assert info.config.subjects == ["$KV.settings.>"]
            assert (info.config.max_msgs_per_subject, info.config.deny_delete, info.config.allow_rollup_hdrs) == (5, True, True)

            assert await kv.put("color", b"red") == 1
            entry = await kv.get("color")
            assert (entry.key, entry.value, entry.revision) == ("color", b"red", 1)
            assert await kv.update("color", b"blue", last=1) == 2
            with pytest.raises(nats.js.errors.KeyWrongLastSequenceError) as stale:
                await kv.update("color", b"green", last=1)
            assert "wrong last sequence: 2" in str(stale.value)
            assert await kv.create("size", b"xl") == 3
            with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
                await kv.create("size", b"xxl")
            assert sorted(await kv.keys()) == ["color", "size"]

            history = await kv.history("color")
            assert [(e.value, e.revision) for e in history] == [(b"red", 1), (b"blue", 2)]

            await kv.delete("size")
            with pytest.raises(nats.js.errors.KeyNotFoundError):
                await kv.get("size")
            # A deleted key can be created again.
            assert await kv.create("size", b"s") == 5
            await kv.purge("color")
            with pytest.raises(nats.js.errors.KeyNotFoundError):
                await kv.get("color")
            assert await kv.keys() == ["size"]
            # The purge left only its marker for the key.
            history = await kv.history("color")
            assert [e.operation for e in history] == ["PURGE"]
        finally:
            await nc.close()
    run(body())


def test_key_value_watch_sees_current_values_then_updates(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            kv = await js.create_key_value(bucket="watched", history=1)
            await kv.put("a", b"1")
            await kv.put("b", b"2")
            watcher = await kv.watchall()
            initial = []
            while True:
                entry = await watcher.updates(timeout=3)
                if entry is None:  # the marker after the initial values
                    break
                initial.append((entry.key, entry.value, entry.revision))
            assert initial == [("a", b"1", 1), ("b", b"2", 2)]
            await kv.put("a", b"3")
            await kv.delete("b")
            update = await watcher.updates(timeout=3)
            assert (update.key, update.value, update.revision) == ("a", b"3", 3)
            deleted = await watcher.updates(timeout=3)
            assert (deleted.key, deleted.operation, deleted.revision) == ("b", "DEL", 4)
            await watcher.stop()
        finally:
            await nc.close()
    run(body())


# Object store


def test_object_store_put_get_list_delete(js_broker):
    async def body():
        nc, js = await connect(js_broker)
        try:
            obs = await js.create_object_store("files")
            # A few hundred KiB: several 128 KiB chunks and a partial one.
            data = bytes((i * 7 + i // 256) % 256 for i in range(300 * 1024 + 17))
            info = await obs.put("blob.bin", data)
            assert (info.name, info.size, info.chunks) == ("blob.bin", len(data), 3)
            await obs.put("small.txt", b"hello")
            got = await obs.get("blob.bin")
            assert got.data == data
            assert got.info.size == len(data)
            assert sorted(o.name for o in await obs.list()) == ["blob.bin", "small.txt"]
            await obs.delete("blob.bin")
            with pytest.raises(nats.js.errors.ObjectNotFoundError):
                await obs.get("blob.bin")
            assert (await obs.get("small.txt")).data == b"hello"
            # The deleted object's chunks are purged from the stream.
            state = (await js.stream_info("OBJ_files")).state
            assert state.messages == 3  # small.txt's chunk and meta, blob.bin's delete marker
        finally:
            await nc.close()
    run(body())


# Both brokers, side by side


def _scrub(value):
    """Takes the per-run values out of an API response: times and the server's name."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("created", "ts", "first_ts", "last_ts", "last_active", "time") and isinstance(item, str):
                out[key] = "<time>"
            elif key == "leader":
                out[key] = "<server>"
            else:
                out[key] = _scrub(item)
        return out
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


async def _api_script(url):
    """A fixed sequence of raw API requests and publishes; returns every response parsed."""
    nc = await nats.connect(url, allow_reconnect=False)
    answers = []

    async def request(subject, body=b""):
        msg = await nc.request(subject, body, timeout=5)
        answers.append((subject, _scrub(json.loads(msg.data))))

    try:
        await request("$JS.API.STREAM.CREATE.CMP", json.dumps({"name": "CMP", "subjects": ["cmp.>"]}).encode())
        await request("$JS.API.STREAM.CREATE.CMP", b"{not json")
        await request("$JS.API.STREAM.CREATE.CMP", json.dumps({"name": "OTHER"}).encode())
        for i in range(3):
            await request(f"cmp.{i}", f"payload {i}".encode())
        await request("cmp.0", b"again")
        await request("$JS.API.STREAM.INFO.CMP")
        await request("$JS.API.STREAM.INFO.CMP", json.dumps({"subjects_filter": ">"}).encode())
        await request("$JS.API.STREAM.MSG.GET.CMP", json.dumps({"seq": 2}).encode())
        await request("$JS.API.STREAM.MSG.GET.CMP", json.dumps({"last_by_subj": "cmp.0"}).encode())
        await request("$JS.API.STREAM.MSG.GET.CMP", json.dumps({"seq": 99}).encode())
        await request("$JS.API.CONSUMER.CREATE.CMP.dur", json.dumps(
            {"stream_name": "CMP", "config": {"durable_name": "dur", "ack_policy": "explicit"}}).encode())
        await request("$JS.API.CONSUMER.INFO.CMP.dur")
        await request("$JS.API.CONSUMER.INFO.CMP.missing")
        await request("$JS.API.CONSUMER.NAMES.CMP")
        await request("$JS.API.STREAM.NAMES")
        await request("$JS.API.STREAM.PURGE.CMP", json.dumps({"filter": "cmp.0"}).encode())
        await request("$JS.API.CONSUMER.DELETE.CMP.dur")
        await request("$JS.API.STREAM.DELETE.CMP")
        await request("$JS.API.STREAM.INFO.CMP")
        await request("$JS.API.INFO")
    finally:
        await nc.close()
    return answers


def test_api_answers_match_between_brokers():
    """The same requests against both brokers get the same JSON, once times and names are taken out."""
    require_broker("reference")
    if not has_jetstream("ours"):
        pytest.skip("our broker has no JetStream yet (the `jetstream` capability probe fails)")
    answers = {}
    for kind in ("reference", "ours"):
        broker = jetstream_broker(kind)
        try:
            answers[kind] = run(_api_script(broker.url))
        finally:
            broker.close()
    assert len(answers["ours"]) == len(answers["reference"])
    for (subject, ref), (_, ours) in zip(answers["reference"], answers["ours"]):
        assert ours == ref, f"{subject}: nats-server 2.9.10 answered {ref}, ours {ours}"


def test_api_script_is_deterministic_on_the_reference():
    """The comparison above can only fail for a real difference: two runs of 2.9.10 agree."""
    require_broker("reference")
    runs = []
    for _ in range(2):
        broker = jetstream_broker("reference")
        try:
            runs.append(run(_api_script(broker.url)))
        finally:
            broker.close()
    assert runs[0] == runs[1]
    # And the script sees the answers it was written for.
    by_subject = dict(runs[0])
    assert by_subject["$JS.API.STREAM.INFO.CMP"]["error"]["err_code"] == 10059
    assert runs[0][1][1]["error"]["err_code"] == 10025
    assert runs[0][2][1]["error"]["err_code"] == 10056
