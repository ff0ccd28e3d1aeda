"""Broadcast delivery: a saved segment's N members, broadcast over customer service at R/s.

What is measured: ``--members`` members (set-based inserts), each a follower whose
customer-service window is open, and a saved segment (everyone following the account);
the fake platform, in its own process, answers 45011 above ``--rate`` requests a second
(``/_control/rate_limit``). ``--workers`` sender processes (one on SQLite; several share
the table on PostgreSQL, their token buckets in Redis) start first and poll; then the
real broadcast path runs: ``BroadcastService.create`` (a marketing ``broadcast_promo``
broadcast on ``oa_cs``) and ``start`` (reach, set-based enqueue page by page, the rows
``pending`` at once, so the senders drain while the enqueue goes on) until the broadcast
is ``done`` (every row final). Printed: start to done against the ideal N/R, the enqueue
time, the 45011 answers seen, each sender's peak memory (ru_maxrss) and its CPU seconds
per 1,000 rows (from the moment it was ready: imports and start-up excluded).

Stacks: a new SQLite file (default), or ``--db postgres://…/NAME`` (``NAME`` must contain
``bench``: it is dropped and created) with ``--redis redis://…/N`` (``N`` ≠ 0: flushed)
for the shared buckets.

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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from bench.outbound import _free_port
from bench.sop import _PG_FILL, _SQLITE_FILL
from bench.stacks import Stack, StackError
from bot.app import Overrides, build_services
from bot.config import Settings, settings_from_dict
from bot.devtools.fake import FakePlatform, create_fake_app
from bot.outbox.sender import Sender
from bot.services.broadcasts import BroadcastService, Rules
from storage import db

APPID = "wxbenchbroadcast"
API = "cgi-bin/message/custom/send"
ACTOR = "bench"
RULE = {"all": [{"field": "followed", "is": True, "account": "bench"}]}
PROMO = {"variables": {"headline": "双十一", "body": "全场 8 折"}}
FILLS = {
    "postgres": {
        "member": _PG_FILL,
        "identity": """
INSERT INTO identity (kind, app, value, member_id, followed, last_message_at,
    cs_sent_since_message, cs_sent_since_event, created_at)
SELECT 'oa_openid', '{appid}', 'oBc' || id, id, TRUE, TIMESTAMPTZ '{wrote}', 0, 0,
    TIMESTAMPTZ '{at}' FROM member""",
    },
    "sqlite": {
        "member": _SQLITE_FILL,
        "identity": """
INSERT INTO identity (kind, app, value, member_id, followed, last_message_at,
    cs_sent_since_message, cs_sent_since_event, created_at)
SELECT 'oa_openid', '{appid}', 'oBc' || id, id, 1, '{wrote}', 0, 0, '{at}' FROM member""",
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
        "sop": {"quiet_hours": ""},
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
    """Members, identities whose window opened an hour ago, the segment; seconds taken."""
    from tortoise import connections

    from storage.repos import segments

    await db.migrate(db_url)
    await db.open_db(db_url)
    try:
        conn = connections.get("default")
        fills = FILLS["postgres" if conn.capabilities.dialect == "postgres" else "sqlite"]
        now = datetime.now().astimezone()
        at, wrote = (now - timedelta(days=30)).isoformat(), (now - timedelta(hours=1)).isoformat()
        started = time.perf_counter()
        await conn.execute_script(fills["member"].format(n=members, active=at, idle=at, joined=at))
        await conn.execute_script("UPDATE member SET marketing_opt_out = FALSE")
        await conn.execute_script(fills["identity"].format(appid=APPID, at=at, wrote=wrote))
        await conn.execute_script("ANALYZE")
        await segments.save("bench", RULE, description="bench", actor=ACTOR, now=now)
        return time.perf_counter() - started
    finally:
        await db.close_db()


def _sender(db_url: str, redis_url: str, fake_url: str, args: Any, ready: Any, out: Any) -> None:
    """One sender process: send until the broadcast is done; peak memory, CPU, rows."""
    out.put(asyncio.run(_drain(db_url, redis_url, fake_url, args, ready)))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drain(
    db_url: str, redis_url: str, fake_url: str, args: Any, ready: Any
) -> dict[str, float]:
    """Poll like a serving process's sender until a broadcast is done (or cancelled)."""
    from storage.models import Broadcast

    await db.open_db(db_url)
    services = build_services(_settings(db_url, redis_url, fake_url, args), Overrides())
    await services.clients.start()
    try:
        sender = Sender.for_services(services)
        cpu, handled = _cpu(), 0
        ready.put(True)
        while not await Broadcast.filter(state__in=("done", "cancelled")).exists():
            sent = await sender.run_once()
            handled += sent
            if not sent:
                await asyncio.sleep(0.05)  # rows sent back by 45011 are due in 1 s
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"maxrss_mb": usage.ru_maxrss / 1024, "cpu": _cpu() - cpu, "handled": handled}
    finally:
        await services.clients.close()
        await services.cache.close()
        await db.close_db()


async def _broadcast(db_url: str, fake_url: str, args: Any) -> dict[str, Any]:
    """Create and start the broadcast (the enqueue), then wait until it is done."""
    from storage.repos import segments

    await db.open_db(db_url)
    services = build_services(_settings(db_url, "", fake_url, args), Overrides())
    try:
        bc = BroadcastService.for_services(services, rules=Rules(batch=args.enqueue_batch))
        segment = await segments.get("bench")
        assert segment is not None
        made = await bc.create(
            "双十一",
            "oa_cs",
            actor=ACTOR,
            template="broadcast_promo",
            content=PROMO,
            account="bench",
            segment_id=int(segment.id),
        )
        began = time.time()
        reach = await bc.start(int(made.id), actor=ACTOR)
        enqueued = time.time()
        while True:  # a serving process's status call turns it done the same way
            status = await bc.status(int(made.id))
            if status["state"] == "done":
                break
            await asyncio.sleep(0.1)
        ended = time.time()
        return {
            "began": began,
            "enqueue": enqueued - began,
            "elapsed": ended - began,
            "reached": reach.reached,
            "rows": status["rows"],
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        await services.cache.close()
        await db.close_db()


def _run(args: argparse.Namespace, db_url: str, fake_url: str) -> dict[str, Any]:
    stack = Stack(args.db, args.redis)
    stack.reset()
    filled = asyncio.run(_fill(db_url, args.members))
    _control(fake_url, "rate_limit", {"platform": "oa", "api": API, "per_second": args.rate})
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_sender, args=(db_url, args.redis, fake_url, args, ready, out))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    figures = asyncio.run(_broadcast(db_url, fake_url, args))
    reports = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    calls = _control(fake_url, f"calls?platform=oa&api={API}")["calls"]
    return {
        **figures,
        "filled": filled,
        "accepted": sum(1 for c in calls if c["errcode"] == 0),
        "rate_limited": sum(1 for c in calls if c["errcode"] == 45011),
        "reports": reports,
    }


def main() -> None:
    """Parse the flags, start the fake, fill, broadcast, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000, help="rows per sender claim")
    parser.add_argument("--enqueue-batch", type=int, default=500, help="members per page")
    parser.add_argument("--db", default="")
    parser.add_argument("--redis", default="")
    args = parser.parse_args()
    try:
        Stack(args.db, args.redis).check()
    except StackError as exc:
        parser.error(str(exc))
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
    with open("/proc/loadavg") as load:
        loadavg = " ".join(load.read().split()[:3])
    print(
        f"members={args.members} rate={args.rate:.0f}/s workers={args.workers} "
        f"concurrency={args.concurrency} db={stack} (filled in {f['filled']:.1f} s); "
        f"load average {loadavg}"
    )
    print(
        f"start to done {f['elapsed']:.1f} s vs N/R = {ideal:.1f} s: ratio "
        f"{f['elapsed'] / ideal:.3f}; enqueue {f['enqueue']:.1f} s "
        f"(reached {f['reached']}, peak memory {f['maxrss_mb']:.0f} MB)"
    )
    print(f"rows {f['rows']}; accepted {f['accepted']}, 45011 answers {f['rate_limited']}")
    for i, r in enumerate(f["reports"]):
        per = r["cpu"] / r["handled"] * 1000 if r["handled"] else 0.0
        print(
            f"sender {i}: peak memory {r['maxrss_mb']:.0f} MB, CPU {r['cpu']:.1f} s "
            f"for {r['handled']:.0f} rows ({per:.2f} s per 1,000)"
        )


if __name__ == "__main__":
    main()
