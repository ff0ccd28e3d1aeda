"""Broadcast delivery: N customer-service rows drained against a platform limited to R/s.

What is measured: ``--members`` members (set-based inserts), each a follower whose
customer-service window is open, and one ``oa_cs`` outbox row each (one ``INSERT …
SELECT``); the fake platform, in its own process, answers 45011 above ``--rate``
requests a second (``/_control/rate_limit``); ``--workers`` sender processes (one on
SQLite; several share the table on PostgreSQL, their token buckets in Redis) drain the
rows. Printed: completion time against the ideal N/R, the 45011 answers seen, and each
sender's peak memory (ru_maxrss).

Stacks: a new SQLite file (default), or ``--db postgres://…/NAME`` (``NAME`` must contain
``bench``: it is dropped and created) with ``--redis`` for the shared buckets.

Run: ``.venv/bin/python bench/broadcast.py --members 10000``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from bench.outbound import _free_port
from bench.sop import _PG_FILL, _SQLITE_FILL, recreate_pg
from bot.app import Overrides, build_services
from bot.config import Settings, settings_from_dict
from bot.devtools.fake import FakePlatform, create_fake_app
from bot.outbox.sender import Sender
from storage import db

APPID = "wxbenchbroadcast"
API = "cgi-bin/message/custom/send"
AT = "2026-01-01 04:00:00+00:00"  # due (and windows open) long before now
FILLS = {
    "postgres": {
        "member": _PG_FILL,
        "identity": """
INSERT INTO identity (kind, app, value, member_id, followed, last_message_at,
    cs_sent_since_message, cs_sent_since_event, created_at)
SELECT 'oa_openid', '{appid}', 'oBc' || id, id, TRUE, TIMESTAMPTZ '{at}', 0, 0,
    TIMESTAMPTZ '{at}' FROM member""",
        "outbox": """
INSERT INTO outbox_message (idempotency_key, channel, account, recipient, member_id, source,
    kind, group_key, staff_userid, external_ref, payload, status, reason, attempts, due_at,
    claimed_by, created_at)
SELECT 'bc:1:' || member_id, 'oa_cs', 'bench', value, member_id, 'broadcast', 'marketing',
    'bc:1', '', '', '{"text": "双十一"}', 'pending', '', 0, TIMESTAMPTZ '%s', '', NOW()
FROM identity WHERE kind = 'oa_openid'""",
    },
    "sqlite": {
        "member": _SQLITE_FILL,
        "identity": """
INSERT INTO identity (kind, app, value, member_id, followed, last_message_at,
    cs_sent_since_message, cs_sent_since_event, created_at)
SELECT 'oa_openid', '{appid}', 'oBc' || id, id, 1, '{at}', 0, 0, '{at}' FROM member""",
        "outbox": """
INSERT INTO outbox_message (idempotency_key, channel, account, recipient, member_id, source,
    kind, group_key, staff_userid, external_ref, payload, status, reason, attempts, due_at,
    claimed_by, created_at)
SELECT 'bc:1:' || member_id, 'oa_cs', 'bench', value, member_id, 'broadcast', 'marketing',
    'bc:1', '', '', '{"text": "双十一"}', 'pending', '', 0, '%s', '', '%s'
FROM identity WHERE kind = 'oa_openid'""",
    },
}


def _settings(db_url: str, redis_url: str, fake_url: str, args: argparse.Namespace) -> Settings:
    raw: dict[str, Any] = {
        "accounts": {
            "bench": {
                "appid": APPID,
                "secret": "s",
                "token": "bench-token",
                "mode": "plaintext",
                "type": "service",
                "verified": True,
            }
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
    return settings_from_dict(raw, {}, "bench-broadcast.toml")


def _serve_fake(port: int, members: int) -> None:
    platform = FakePlatform()
    platform.add_account(APPID, "s", "service", True)
    for i in range(1, members + 1):
        platform.interaction(APPID, f"oBc{i}", "message")
    web.run_app(create_fake_app(platform), host="127.0.0.1", port=port, print=None)


def _wait_for(port: int, seconds: float = 180.0) -> None:
    """Until the fake listens (it opens every member's window first: seconds at 100,000)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("the fake platform did not start")


def _control(fake_url: str, name: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{fake_url}/_control/{name}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())


async def _fill(db_url: str, members: int) -> float:
    from tortoise import connections

    await db.migrate(db_url)
    await db.open_db(db_url)
    try:
        conn = connections.get("default")
        fills = FILLS["postgres" if conn.capabilities.dialect == "postgres" else "sqlite"]
        started = time.perf_counter()
        await conn.execute_script(fills["member"].format(n=members, active=AT, idle=AT, joined=AT))
        await conn.execute_script(fills["identity"].format(appid=APPID, at=AT))
        await conn.execute_script(fills["outbox"].replace("%s", AT))
        await conn.execute_script("ANALYZE")
        return time.perf_counter() - started
    finally:
        await db.close_db()


async def _count_open(db_url: str) -> int:
    from tortoise import connections

    await db.open_db(db_url)
    try:
        conn = connections.get("default")
        _, rows = await conn.execute_query(
            "SELECT COUNT(*) FROM outbox_message WHERE status IN ('pending', 'sending')"
        )
        return int(next(iter(dict(rows[0]).values())))
    finally:
        await db.close_db()


def _sender(db_url: str, redis_url: str, fake_url: str, args: Any, out: Any) -> None:
    """One sender process: drain until nothing is pending; report peak memory and CPU."""
    began, ended = asyncio.run(_drain(db_url, redis_url, fake_url, args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    out.put({"maxrss_mb": usage.ru_maxrss / 1024, "cpu": cpu, "began": began, "ended": ended})


async def _drain(db_url: str, redis_url: str, fake_url: str, args: Any) -> tuple[float, float]:
    """Send until no row is pending; (wall time of the first claim, of the end)."""
    from storage.models import OutboxMessage

    await db.open_db(db_url)
    services = build_services(_settings(db_url, redis_url, fake_url, args), Overrides())
    await services.clients.start()
    try:
        sender = Sender.for_services(services)
        began = time.time()
        while await OutboxMessage.filter(status="pending").exists():
            if not await sender.run_once():
                await asyncio.sleep(0.05)  # rows sent back by 45011 are due in 1 s
        return began, time.time()
    finally:
        await services.clients.close()
        await services.cache.close()
        await db.close_db()


def _run(args: argparse.Namespace, db_url: str, fake_url: str) -> dict[str, Any]:
    if not db.is_sqlite(db_url):
        asyncio.run(recreate_pg(db_url))
    filled = asyncio.run(_fill(db_url, args.members))
    _control(fake_url, "rate_limit", {"platform": "oa", "api": API, "per_second": args.rate})
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    started = time.perf_counter()
    procs = [
        ctx.Process(target=_sender, args=(db_url, args.redis, fake_url, args, out))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    reports = [out.get() for _ in procs]
    total = time.perf_counter() - started
    elapsed = max(r["ended"] for r in reports) - min(r["began"] for r in reports)
    for proc in procs:
        proc.join(30)
    left = asyncio.run(_count_open(db_url))
    calls = _control(fake_url, f"calls?platform=oa&api={API}")["calls"]
    return {
        "filled": filled,
        "elapsed": elapsed,
        "total": total,
        "left": left,
        "accepted": sum(1 for c in calls if c["errcode"] == 0),
        "rate_limited": sum(1 for c in calls if c["errcode"] == 45011),
        "reports": reports,
    }


def main() -> None:
    """Parse the flags, start the fake, fill, drain, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--db", default="")
    parser.add_argument("--redis", default="")
    args = parser.parse_args()
    if args.db and "bench" not in args.db.rsplit("/", 1)[-1]:
        parser.error("--db must name a database with 'bench' in its name (it is recreated)")
    if args.workers > 1 and not args.db:
        parser.error("several --workers need PostgreSQL (--db) and Redis (--redis)")
    port = _free_port()
    fake = multiprocessing.get_context("spawn").Process(
        target=_serve_fake, args=(port, args.members), daemon=True
    )
    fake.start()
    try:
        _wait_for(port)
        with tempfile.TemporaryDirectory() as tmp:
            db_url = args.db or f"sqlite://{tmp}/bench.sqlite3"
            figures = _run(args, db_url, f"http://127.0.0.1:{port}")
    finally:
        fake.terminate()
        fake.join(5)
    _print(args, db_url, figures)


def _print(args: argparse.Namespace, db_url: str, f: dict[str, Any]) -> None:
    ideal = args.members / args.rate
    stack = "sqlite" if db.is_sqlite(db_url) else "postgres" + ("+redis" if args.redis else "")
    print(
        f"members={args.members} rate={args.rate:.0f}/s workers={args.workers} "
        f"concurrency={args.concurrency} db={stack} (filled in {f['filled']:.1f} s)"
    )
    print(
        f"drained in {f['elapsed']:.1f} s vs N/R = {ideal:.1f} s: ratio "
        f"{f['elapsed'] / ideal:.3f}; accepted {f['accepted']}, 45011 answers "
        f"{f['rate_limited']}, rows left {f['left']} (with process start-up {f['total']:.1f} s)"
    )
    for i, report in enumerate(f["reports"]):
        print(f"sender {i}: peak memory {report['maxrss_mb']:.0f} MB, CPU {report['cpu']:.1f} s")


if __name__ == "__main__":
    main()
