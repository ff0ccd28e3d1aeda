"""Outbound sender throughput: customer-service rows sent against the fake platform.

What is measured: ``--rows`` customer-service text rows (each to its own follower with an
open window) enqueued, then one sender (``--concurrency`` calls in flight, token bucket at
``--rate`` per second) drains them; the figure is rows settled per second, wall time from
the first claim to the last row settled. The fake platform runs in its own process (on
another CPU when there are two), optionally with its own global rate limit
(``--fake-rate``: calls above it answer 45011 and go back to the pool, reason ``rate``).

Stacks: a new SQLite file (default), or ``--db postgres://…/NAME`` (``NAME`` must contain
``bench``; its tables are emptied first) with ``--redis`` for the shared buckets.

Run: ``.venv/bin/python bench/outbound.py --rows 5000 --concurrency 32 --rate 1000``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from bot.app import Overrides, build_services
from bot.config import Settings, settings_from_dict
from bot.devtools.fake import FakePlatform, create_fake_app
from bot.outbox.sender import Sender
from storage import db
from storage.models import OutboxMessage

APPID = "wxbenchoutbound1"
API = "cgi-bin/message/custom/send"


def _settings(db_url: str, redis_url: str, fake_url: str, args: argparse.Namespace) -> Settings:
    raw: dict[str, Any] = {
        "accounts": {
            "bench": {"appid": APPID, "secret": "s", "token": "bench-token", "mode": "plaintext"}
        },
        "database": {"url": db_url},
        "redis": {"url": redis_url},
        "api": {"oa_base_url": f"{fake_url}/oa", "wecom_base_url": f"{fake_url}/wecom"},
        "log": {"level": "WARNING"},
        "outbound": {
            "concurrency": args.concurrency,
            "batch": args.batch,
            "rate_per_second": args.rate,
        },
    }
    return settings_from_dict(raw, {}, "bench-outbound.toml")


def _serve_fake(port: int, rows: int, fake_rate: float) -> None:
    platform = FakePlatform()
    platform.add_account(APPID, "s")
    for i in range(rows):
        platform.interaction(APPID, f"oBench{i}", "message")
    if fake_rate:
        platform.rate_limit("oa", API, fake_rate)
    web.run_app(create_fake_app(platform), host="127.0.0.1", port=port, print=None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _enqueue(rows: int, now: Any) -> None:
    batch = [
        OutboxMessage(
            idempotency_key=f"bench:{i}",
            channel="oa_cs",
            account="bench",
            recipient=f"oBench{i}",
            source="bench",
            payload={"text": "hi"},
            due_at=now,
        )
        for i in range(rows)
    ]
    await OutboxMessage.bulk_create(batch, batch_size=1000)


async def _run(args: argparse.Namespace, db_url: str, fake_url: str) -> None:
    await db.migrate(db_url)
    await db.open_db(db_url)
    if not db.is_sqlite(db_url):
        await OutboxMessage.all().delete()
    settings = _settings(db_url, args.redis, fake_url, args)
    services = build_services(settings, Overrides())
    await services.clients.start()
    try:
        await _enqueue(args.rows, services.clock.now())
        sender = Sender.for_services(services)
        started, cpu = time.perf_counter(), time.process_time()
        while await OutboxMessage.filter(status="pending").exists():
            if not await sender.run_once():
                await asyncio.sleep(0.05)  # rows sent back by a rate code are due in 1 s
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        counts = Counter(await OutboxMessage.all().values_list("status", flat=True))
    finally:
        await services.clients.close()
        await services.cache.close()
        await db.close_db()
    print(
        f"rows={args.rows} concurrency={args.concurrency} rate={args.rate}/s "
        f"fake_rate={args.fake_rate or '-'} db={'sqlite' if db.is_sqlite(db_url) else 'postgres'}"
    )
    print(f"settled in {elapsed:.2f} s: {args.rows / elapsed:.0f} rows/s; statuses {dict(counts)}")
    print(f"sender CPU {cpu:.2f} s: {args.rows / cpu:.0f} rows per CPU second")


def main() -> None:
    """Parse the flags, start the fake, run the sender once, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--fake-rate", type=float, default=0.0)
    parser.add_argument("--db", default="")
    parser.add_argument("--redis", default="")
    args = parser.parse_args()
    if args.db and "bench" not in args.db.rsplit("/", 1)[-1]:
        parser.error("--db must name a database with 'bench' in its name (its rows are deleted)")
    port = _free_port()
    fake = multiprocessing.get_context("spawn").Process(
        target=_serve_fake, args=(port, args.rows, args.fake_rate), daemon=True
    )
    fake.start()
    try:
        _wait_for(port)
        with tempfile.TemporaryDirectory() as tmp:
            db_url = args.db or f"sqlite://{tmp}/bench.sqlite3"
            asyncio.run(_run(args, db_url, f"http://127.0.0.1:{port}"))
    finally:
        fake.terminate()
        fake.join(5)


def _wait_for(port: int) -> None:
    for _ in range(200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("the fake platform did not start")


if __name__ == "__main__":
    main()
