"""nkey users through nats-py (its nkeys_seed / nkeys_seed_str options, signed with the Python
`nkeys` package), on both brokers with the same config file."""

import os

import nats
import pytest

from conftest import BROKERS, Broker, run
from helpers import barrier, collect

try:
    import nkeys  # noqa: F401  (nats-py signs the nonce with it)
except ImportError:
    if os.environ.get("REQUIRE_PEERS") == "1":
        raise
    pytest.skip("the Python nkeys package is not installed", allow_module_level=True)

# nats-server 2.9.10's test users (server/reload_test.go): a seed, its public key, another seed.
SEED = "SUAPM67TC4RHQLKBX55NIQXSMATZDOZK6FNEOSS36CAYA7F7TY66LP4BOM"
PUBLIC = "UCNGL4W5QX66CFX6A6DCBVDH5VOHMI7B2UZZU7TXAUQQSI2JPHULCKBR"
OTHER_SEED = "SUAIS5JPX4X4GJ7EIIJEQ56DH2GWPYJRPWN5XJEDENJOZHCBLI7SEPUQDE"


@pytest.fixture(scope="module", params=BROKERS)
def nkey_broker(request):
    b = Broker(request.param, config_lines=[
        "authorization {",
        "  users = [",
        f'    {{nkey: {PUBLIC}, permissions: {{publish: ["nk.>", "_INBOX.>"], subscribe: ["nk.>", "_INBOX.>"]}}}}',
        "  ]",
        "}",
    ]).start()
    yield b
    b.close()


async def connect(url, **credentials):
    return await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5,
                              **credentials)


def test_a_seed_string_logs_in_and_round_trips(nkey_broker):
    async def body():
        nc = await connect(nkey_broker.url, nkeys_seed_str=SEED)
        try:
            assert len(nc._server_info.get("nonce", "")) == 15
            sub = await nc.subscribe("nk.py")
            await barrier(nc)
            await nc.publish("nk.py", b"signed")
            await barrier(nc)
            assert [m.data for m in await collect(sub, 1)] == [b"signed"]
        finally:
            await nc.close()
    run(body())


def test_a_seed_file_logs_in(nkey_broker, tmp_path):
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(SEED + "\n")

    async def body():
        nc = await connect(nkey_broker.url, nkeys_seed=str(seed_file))
        try:
            await barrier(nc)
        finally:
            await nc.close()
    run(body())


@pytest.mark.parametrize("credentials", [{"nkeys_seed_str": OTHER_SEED}, {}], ids=["unknown-key", "no-credentials"])
def test_an_unknown_key_or_none_is_refused(nkey_broker, credentials):
    async def body():
        try:
            nc = await connect(nkey_broker.url, **credentials)
        except Exception as error:  # nats-py raises with the server's -ERR text
            assert "authorization violation" in str(error).lower()
            return
        await nc.close()
        pytest.fail("the broker accepted a client that did not prove a configured nkey")
    run(body())
