"""nats-py client of a Swift Service: a request to its endpoint, and raw $SRV.PING/INFO/STATS.

Usage: service_client.py URL SERVICE_NAME ENDPOINT_SUBJECT. Prints one JSON object with what it saw;
exits non-zero (with the reason on stderr) when a response lacks a key or has a wrong type.
"""
import asyncio
import json
import re
import sys

import nats

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def need(obj, key, kind):
    if key not in obj:
        raise SystemExit(f"missing key {key!r} in {obj}")
    if not isinstance(obj[key], kind) or (kind is int and isinstance(obj[key], bool)):
        raise SystemExit(f"key {key!r} has type {type(obj[key]).__name__} in {obj}")
    return obj[key]


async def main() -> None:
    url, name, subject = sys.argv[1], sys.argv[2], sys.argv[3]
    nc = await nats.connect(url)
    out = {}

    reply = await nc.request(subject, b"from-python", timeout=5)
    out["endpoint_reply"] = reply.data.decode()

    err = await nc.request(subject, b"fail", timeout=5)
    out["error_headers"] = dict(err.headers or {})

    ping = json.loads((await nc.request(f"$SRV.PING.{name}", b"", timeout=5)).data)
    for key in ("name", "id", "version", "type"):
        need(ping, key, str)
    need(ping, "metadata", dict)
    out["ping"] = ping

    info = json.loads((await nc.request("$SRV.INFO", b"", timeout=5)).data)
    for key in ("name", "id", "version", "type", "description"):
        need(info, key, str)
    for endpoint in need(info, "endpoints", list):
        for key in ("name", "subject", "queue_group"):
            need(endpoint, key, str)
        if "metadata" not in endpoint:
            raise SystemExit(f"endpoint without metadata key: {endpoint}")
    out["info"] = info

    stats = json.loads((await nc.request(f"$SRV.STATS.{name}.{ping['id']}", b"", timeout=5)).data)
    for key in ("name", "id", "version", "type", "started"):
        need(stats, key, str)
    if not RFC3339.match(stats["started"]):
        raise SystemExit(f"started is not RFC3339 UTC: {stats['started']}")
    for endpoint in need(stats, "endpoints", list):
        for key in ("name", "subject", "queue_group", "last_error"):
            need(endpoint, key, str)
        for key in ("num_requests", "num_errors", "processing_time", "average_processing_time"):
            need(endpoint, key, int)
    out["stats"] = stats

    await nc.close()
    print(json.dumps(out), flush=True)


asyncio.run(main())
