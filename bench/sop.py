"""SOP audiences at scale: birthday selection and member-day claims over 1,000,000 members.

Builds ``--members`` members set-based (``generate_series`` on PostgreSQL, a recursive CTE
on SQLite) with birthdays spread over the year and ~60 % active, ``VACUUM ANALYZE``
(SQLite: ``ANALYZE``), then times, through
``sop.audiences``: the birthday audience's count and first page (cold, then the median of
``--repeat`` runs), the member-day claim of every active member (``INSERT … SELECT … ON
CONFLICT DO NOTHING`` per batch of ``[sop] batch`` members) and a second claim (all
conflicts), and the process's peak memory (``ru_maxrss``). Each stack runs in its own
process, so the memory figure is that stack's.

    .venv/bin/python bench/sop.py                       # PostgreSQL and SQLite
    .venv/bin/python bench/sop.py --only sqlite --members 200000
    .venv/bin/python bench/sop.py --db postgres://postgres@127.0.0.1:5432/bench_sop

On PostgreSQL the database named in ``--db`` (default ``bench_sop``, or ``SCRM_BENCH_DB``)
is DROPPED and created again, so its name must contain ``bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from bot.config_sop import SopRule  # noqa: E402
from sop.audiences import compile_audience  # noqa: E402
from storage import db  # noqa: E402

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/bench_sop"
BIRTHDAY_FIRE = datetime(2027, 5, 20, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
MEMBER_DAY_FIRE = datetime(2027, 5, 8, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, the 8th
ACTIVE_AT = "2027-05-01 04:00:00+00:00"
IDLE_AT = "2027-01-01 04:00:00+00:00"
JOINED_AT = "2024-01-01 04:00:00+00:00"

_PG_FILL = """
INSERT INTO member (code, status, tier, growth, points_balance, points_debt, birthday,
    birth_md, channel, name, marketing_opt_out, last_active_at, created_at)
SELECT 'B' || g, 'active', 'basic', 0, 0, 0, d,
    (EXTRACT(MONTH FROM d) * 100 + EXTRACT(DAY FROM d))::smallint, '', '', g % 50 = 0,
    CASE WHEN g % 10 < 6 THEN TIMESTAMPTZ '{active}' ELSE TIMESTAMPTZ '{idle}' END,
    TIMESTAMPTZ '{joined}'
FROM (SELECT g, DATE '1980-01-01' + ((g::bigint * 7919) % 366)::int AS d
      FROM generate_series(1, {n}) AS g) AS s
"""

_SQLITE_FILL = """
WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}),
b(g, d) AS (SELECT g, date('1980-01-01', '+' || ((g * 7919) % 366) || ' days') FROM s)
INSERT INTO member (code, status, tier, growth, points_balance, points_debt, birthday,
    birth_md, channel, name, marketing_opt_out, last_active_at, created_at)
SELECT 'B' || g, 'active', 'basic', 0, 0, 0, d,
    CAST(strftime('%m', d) AS INTEGER) * 100 + CAST(strftime('%d', d) AS INTEGER), '', '',
    g % 50 = 0, CASE WHEN g % 10 < 6 THEN '{active}' ELSE '{idle}' END, '{joined}'
FROM b
"""


def sop_rule(sop_id: str, audience: str, kind: str, once_per: str) -> SopRule:
    """A built-in-like rule on this audience."""
    return SopRule.model_validate(
        {
            "id": sop_id,
            "kind": kind,
            "trigger": {"cron": "0 9 * * *"},
            "audience": {"name": audience},
            "action": {"template": "bench"},
            "once_per": once_per,
        }
    )


async def recreate_pg(url: str) -> None:
    """Drop and create the bench database (through the server's ``postgres`` database)."""
    import asyncpg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop {name!r}: the bench database's name needs 'bench'")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def fill(url: str, members: int) -> float:
    """Migrate and insert the members; seconds taken."""
    from tortoise import connections

    await db.migrate(url)
    await db.open_db(url)
    conn = connections.get("default")
    postgres = conn.capabilities.dialect == "postgres"
    template = _PG_FILL if postgres else _SQLITE_FILL
    started = time.perf_counter()
    await conn.execute_script(
        template.format(n=members, active=ACTIVE_AT, idle=IDLE_AT, joined=JOINED_AT)
    )
    # as autovacuum leaves a table in service: statistics, hint bits, the visibility map
    await conn.execute_script("VACUUM ANALYZE member" if postgres else "ANALYZE")
    elapsed = time.perf_counter() - started
    await conn.execute_query("SELECT 1")  # the timings below start on an open connection
    return elapsed


async def timed(make: Any) -> tuple[float, Any]:
    """(milliseconds, result) of awaiting ``make()``."""
    started = time.perf_counter()
    result = await make()
    return (time.perf_counter() - started) * 1000, result


async def measure(url: str, members: int, repeat: int, batch: int) -> dict[str, Any]:
    """Fill, select birthdays, claim member-day touchpoints; the figures."""
    figures: dict[str, Any] = {"fill_s": await fill(url, members)}
    settings = Settings.model_validate({"database": {"url": url}, "sop": {"batch": batch}})
    birthday = compile_audience(
        sop_rule("birthday", "birthday_today", "service", "year"), BIRTHDAY_FIRE, settings
    )

    async def select() -> tuple[int, list[int]]:
        return await birthday.count(), await birthday.member_ids(0, 1000)

    runs = [await timed(select) for _ in range(repeat + 1)]
    figures["birthday_cold_ms"] = runs[0][0]
    figures["birthday_ms"] = statistics.median(ms for ms, _ in runs[1:])
    figures["birthday_count"], page = runs[0][1]
    figures["birthday_page"] = len(page)
    day = compile_audience(
        sop_rule("member_day", "member_day_active", "marketing", "month"), MEMBER_DAY_FIRE, settings
    )
    figures["active"] = await day.count()
    due = MEMBER_DAY_FIRE + timedelta(minutes=1)
    claim = await timed(
        lambda: day.claim(run_id=1, due_at=due, now=MEMBER_DAY_FIRE, batch=settings.sop.batch)
    )
    figures["claim_s"], figures["claimed"] = claim[0] / 1000, claim[1]
    again = await timed(
        lambda: day.claim(run_id=1, due_at=due, now=MEMBER_DAY_FIRE, batch=settings.sop.batch)
    )
    figures["reclaim_s"], figures["reclaimed"] = again[0] / 1000, again[1]
    await db.close_db()
    figures["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def report(stack: str, f: dict[str, Any]) -> None:
    """Print one stack's figures."""
    print(
        f"{stack}: {f['members']:,} members filled in {f['fill_s']:.1f} s\n"
        f"{stack}: birthday selection (count {f['birthday_count']:,} + first page of "
        f"{f['birthday_page']}): {f['birthday_ms']:.1f} ms (cold {f['birthday_cold_ms']:.1f} ms)\n"
        f"{stack}: member-day claim of {f['active']:,} active members, batch {f['batch']:,}: "
        f"{f['claimed']:,} rows in "
        f"{f['claim_s']:.1f} s = {f['claimed'] / max(f['claim_s'], 1e-9):,.0f} rows/s; "
        f"again: {f['reclaimed']:,} rows in {f['reclaim_s']:.1f} s\n"
        f"{stack}: peak memory {f['peak_mb']:.0f} MB"
    )


def run_one(stack: str, url: str, members: int, repeat: int, batch: int) -> dict[str, Any]:
    """One stack in this process."""
    if stack == "postgres":
        asyncio.run(recreate_pg(url))
    figures = asyncio.run(measure(url, members, repeat, batch))
    figures["members"], figures["batch"] = members, batch
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run each stack in its own process and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--db", default=os.environ.get("SCRM_BENCH_DB", DEFAULT_PG))
    parser.add_argument("--only", choices=("postgres", "sqlite"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5000, help="[sop] batch: members per claim")
    parser.add_argument("--child", choices=("postgres", "sqlite"), help=argparse.SUPPRESS)
    parser.add_argument("--sqlite-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url = args.db if args.child == "postgres" else f"sqlite://{args.sqlite_path}"
        report(args.child, run_one(args.child, url, args.members, args.repeat, args.batch))
        return 0
    stacks = [args.only] if args.only else ["postgres", "sqlite"]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for stack in stacks:
            command = [sys.executable, __file__, "--child", stack, "--members", str(args.members)]
            command += ["--db", args.db, "--repeat", str(args.repeat), "--batch", str(args.batch)]
            command += ["--sqlite-path", str(Path(tmp) / "bench_sop.sqlite3")]
            failed |= subprocess.run(command, cwd=ROOT, check=False).returncode
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
