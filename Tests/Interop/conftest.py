"""Broker processes for the nats-py interop tests.

Every test runs against two brokers:
  * ``ours``: NATS_SERVER_BIN, default ``.build/debug/nats-server`` (the debug build of this package);
  * ``reference``: nats-server 2.9.10, NATS_REFERENCE_BIN or ``/usr/sbin/nats-server``.
A missing reference broker skips its cases, unless REQUIRE_PEERS=1 (CI), where it fails them.
A test that needs a config file (``Broker(kind, config_lines=...)``) runs against our broker when it
has the ``config`` capability: probed once with ``nats-server -t -c <file>`` (our broker reads
nats-server config files, so the probe passes on a working build), or named in
NATS_SERVER_CAPABILITIES (comma-separated); without it those cases skip for ours only.
JetStream cases (``jetstream_broker(kind)``) run against our broker when it has the ``jetstream``
capability: probed once by starting it with ``-js -sd <tmp>`` and reading ``"jetstream":true`` in its
INFO line, or named in NATS_SERVER_CAPABILITIES.
"""

import asyncio
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BROKERS = ["ours", "reference"]


def broker_path(kind):
    if kind == "ours":
        return os.environ.get("NATS_SERVER_BIN") or str(REPO / ".build" / "debug" / "nats-server")
    return os.environ.get("NATS_REFERENCE_BIN") or "/usr/sbin/nats-server"


_probed = {}


def capabilities(kind):
    """The capabilities a broker has: nats-server 2.9.10 has `config`; ours has those named in
    NATS_SERVER_CAPABILITIES, plus `config` when `nats-server -t -c <file>` accepts a small config
    file (exit status 0, as 2.9.10 answers), probed once per run."""
    if kind == "reference":
        return {"config"}
    raw = os.environ.get("NATS_SERVER_CAPABILITIES", "")
    caps = {c.strip() for c in raw.split(",") if c.strip()}
    if "config" not in caps:
        if "config" not in _probed:
            with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
                f.write("max_payload: 1KB\n")
                f.flush()
                try:
                    result = subprocess.run([broker_path("ours"), "-t", "-c", f.name], capture_output=True,
                                            stdin=subprocess.DEVNULL, timeout=10)
                    _probed["config"] = result.returncode == 0
                except (OSError, subprocess.TimeoutExpired):
                    _probed["config"] = False
        if _probed["config"]:
            caps.add("config")
    return caps


def _info_says_jetstream(path):
    """Starts `path -js -sd <tmp>` on a free port and reads its INFO line: True when it has
    "jetstream":true. A broker that refuses -js exits, and the probe says False."""
    with tempfile.TemporaryDirectory(prefix="js-probe-") as store:
        port = free_port()
        try:
            proc = subprocess.Popen([path, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        except OSError:
            return False
        try:
            if not wait_accepting(port, proc, time.monotonic() + 10):
                return False
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                line = b""
                while not line.endswith(b"\n") and len(line) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    line += chunk
            return line.startswith(b"INFO ") and b'"jetstream":true' in line
        except OSError:
            return False
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def has_jetstream(kind):
    """Whether `kind` runs JetStream: nats-server 2.9.10 does; ours when `jetstream` is named in
    NATS_SERVER_CAPABILITIES or when `nats-server -js -sd <tmp>` starts and its INFO says
    "jetstream":true (probed once per run)."""
    if kind == "reference":
        return True
    raw = os.environ.get("NATS_SERVER_CAPABILITIES", "")
    if "jetstream" in {c.strip() for c in raw.split(",")}:
        return True
    if "jetstream" not in _probed:
        path = broker_path("ours")
        _probed["jetstream"] = os.access(path, os.X_OK) and _info_says_jetstream(path)
    return _probed["jetstream"]


def jetstream_broker(kind):
    """A started broker of `kind` with JetStream on a store in its work directory; skips our broker
    while it lacks the `jetstream` capability."""
    require_broker(kind)
    if not has_jetstream(kind):
        pytest.skip(f"{kind} broker has no JetStream (`-js -sd <dir>` is refused or INFO lacks \"jetstream\":true)")
    b = Broker(kind)
    b.args += ["-js", "-sd", os.path.join(b.workdir.name, "store")]
    return b.start()


def require_broker(kind):
    """Skips (or fails under REQUIRE_PEERS=1 / for our own broker) when the binary is missing."""
    path = broker_path(kind)
    if os.access(path, os.X_OK):
        return path
    if kind == "ours":
        pytest.fail(f"our broker is not built at {path} (run `swift build` or set NATS_SERVER_BIN)")
    if os.environ.get("REQUIRE_PEERS") == "1":
        pytest.fail(f"nats-server 2.9.10 is required (REQUIRE_PEERS=1) but missing at {path}")
    pytest.skip(f"nats-server 2.9.10 not installed at {path}")


def free_port():
    """A loopback port that was free a moment ago (bind port 0, then release)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def owns_listener(pid, port):
    """Whether process `pid` owns the IPv4 listener on `port` (/proc/net/tcp + /proc/<pid>/fd).

    Another program can take a port between free_port() and the broker's bind; the connect then
    succeeds against the wrong listener. Where /proc is unreadable, assume the listener is ours.
    """
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True
    inodes = set()
    for row in rows:
        fields = row.split()
        address, _, hex_port = fields[1].partition(":")
        if fields[3] == "0A" and int(hex_port, 16) == port and address in ("0100007F", "00000000"):
            inodes.add(fields[9])
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def wait_accepting(port, proc, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
            # /proc/net/tcp is no snapshot: one read can miss a row while many sockets change.
            for _ in range(10):
                if owns_listener(proc.pid, port):
                    return True
                if proc.poll() is not None:
                    return False
                time.sleep(0.02)
            return False
        except OSError:
            time.sleep(0.02)
    return False


class Broker:
    """One broker process on 127.0.0.1. `restart()` brings it back on the same port."""

    def __init__(self, kind, args=(), config_lines=()):
        self.kind = kind
        self.path = require_broker(kind)
        self.args = list(args)
        self.workdir = tempfile.TemporaryDirectory(prefix=f"interop-{kind}-")
        self.config = None
        if config_lines:
            if "config" not in capabilities(kind):
                pytest.skip(f"{kind} broker does not accept config files (`-t -c` failed)")
            self.config = os.path.join(self.workdir.name, "broker.conf")
            with open(self.config, "w") as f:
                f.write("\n".join(config_lines) + "\n")
        self.proc = None
        self.port = None
        self.log = os.path.join(self.workdir.name, "broker.log")

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def _spawn(self, port):
        cmd = [self.path, "-a", "127.0.0.1", "-p", str(port)] + self.args
        if self.config:
            cmd += ["-c", self.config]
        log = open(self.log, "ab")
        try:
            return subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def start(self, port=None, timeout=20.0):
        """Starts on `port`, or on a free port (retrying on a collision). Fails the test if it never accepts."""
        attempts = 1 if port is not None else 5
        deadline = time.monotonic() + timeout
        for _ in range(attempts):
            chosen = port if port is not None else free_port()
            # A restart on the same port may race the old socket's teardown: retry until the deadline.
            while True:
                self.proc = self._spawn(chosen)
                if wait_accepting(chosen, self.proc, deadline):
                    self.port = chosen
                    return self
                self._reap()
                if port is None or time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        with open(self.log, "rb") as f:
            tail = f.read()[-800:].decode(errors="replace")
        pytest.fail(f"{self.kind} broker {self.path} did not accept connections; log: {tail}")

    def _reap(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self):
        self._reap()

    def restart(self):
        port = self.port
        self.stop()
        return self.start(port=port)

    def close(self):
        self.stop()
        self.workdir.cleanup()


def run(coro, timeout=30.0):
    """Runs one asyncio test body with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="module", params=BROKERS)
def broker(request):
    """A broker with default options, shared by the tests of one module."""
    b = Broker(request.param).start()
    yield b
    b.close()
