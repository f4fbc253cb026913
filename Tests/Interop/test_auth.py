"""Token and user/password authentication through nats-py, on both brokers (flags --auth, --user/--pass)."""

import nats
import nats.errors
import pytest

from conftest import BROKERS, Broker, run
from helpers import barrier, collect

TOKEN = "s3cr3t-token"
USER, PASSWORD = "alice", "wonder-land.42"


@pytest.fixture(scope="module", params=BROKERS)
def token_broker(request):
    b = Broker(request.param, args=["--auth", TOKEN]).start()
    yield b
    b.close()


@pytest.fixture(scope="module", params=BROKERS)
def user_broker(request):
    b = Broker(request.param, args=["--user", USER, "--pass", PASSWORD]).start()
    yield b
    b.close()


async def round_trip(nc):
    sub = await nc.subscribe("auth.check")
    await barrier(nc)
    await nc.publish("auth.check", b"ok")
    await barrier(nc)
    return [m.data for m in await collect(sub, 1)]


async def connect_error(url, **credentials):
    """The error nats-py raises when the broker rejects `credentials` (None if it connects)."""
    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5,
                                **credentials)
    except Exception as error:  # nats-py raises nats.errors.Error with the server's -ERR text
        return error
    await nc.close()
    return None


def test_token_auth_accepts_the_right_token(token_broker):
    async def body():
        nc = await nats.connect(token_broker.url, token=TOKEN, allow_reconnect=False)
        try:
            assert nc._server_info.get("auth_required") is True
            assert await round_trip(nc) == [b"ok"]
        finally:
            await nc.close()
    run(body())


@pytest.mark.parametrize("credentials", [
    {"token": "wrong"},
    {},
    {"user": USER, "password": PASSWORD},
], ids=["wrong-token", "no-token", "user-instead-of-token"])
def test_token_auth_rejects_bad_credentials(token_broker, credentials):
    error = run(connect_error(token_broker.url, **credentials))
    assert error is not None, "the broker accepted bad credentials"
    assert "authorization violation" in str(error).lower()


def test_user_password_auth_accepts_good_credentials(user_broker):
    async def body():
        nc = await nats.connect(user_broker.url, user=USER, password=PASSWORD, allow_reconnect=False)
        try:
            assert nc._server_info.get("auth_required") is True
            assert await round_trip(nc) == [b"ok"]
        finally:
            await nc.close()
    run(body())


def test_user_password_in_url_is_accepted(user_broker):
    async def body():
        url = f"nats://{USER}:{PASSWORD}@127.0.0.1:{user_broker.port}"
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            assert await round_trip(nc) == [b"ok"]
        finally:
            await nc.close()
    run(body())


@pytest.mark.parametrize("credentials", [
    {"user": USER, "password": "wrong"},
    {"user": "mallory", "password": PASSWORD},
    {},
    {"token": PASSWORD},
], ids=["wrong-password", "wrong-user", "no-credentials", "token-instead"])
def test_user_password_auth_rejects_bad_credentials(user_broker, credentials):
    error = run(connect_error(user_broker.url, **credentials))
    assert error is not None, "the broker accepted bad credentials"
    assert "authorization violation" in str(error).lower()
