"""Time ``python -m bot orders import`` on generated orders: rows per second.

    .venv/bin/python bench/imports.py                       # 100,000 rows on SQLite
    .venv/bin/python bench/imports.py --rows 20000 --db postgres://postgres@127.0.0.1:5432/bench

Seeds ``--members`` members (half of them with an OA openid), writes ``--rows`` orders
spread over them (member code or openid, amounts from 1 fen to 2,000 yuan in fen or yuan,
June business days including the member day), then runs the import twice as a
subprocess, exactly as an operator would: the first run imports every row, the second
finds every row already recorded (duplicates). On PostgreSQL the database's ``public``
schema is dropped and created again first, so the bench refuses a database whose name
contains neither ``bench`` nor ``test``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stacks import ROOT, Stack, bench_settings, free_port, to_toml

SH = ZoneInfo("Asia/Shanghai")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000, help="orders per transaction")
    parser.add_argument("--db", default="", help="postgres://…/NAME (emptied: NAME has bench/test)")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


async def empty_postgres(url: str) -> None:
    """Drop and re-create the ``public`` schema of a throwaway database."""
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    if "bench" not in name and "test" not in name:
        raise SystemExit(f"--db {name!r}: it is emptied, so its name must contain bench or test")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


async def seed_members(url: str, count: int, appid: str) -> list[tuple[str, str]]:
    """``count`` members (codes BM0000001…), half with an openid; (code, openid) each."""
    from storage import db
    from storage.models import Identity, Member

    await db.migrate(url)
    await db.open_db(url)
    now = datetime.now(SH)
    try:
        codes = [f"BM{i:07d}" for i in range(count)]
        await Member.bulk_create(
            [Member(code=code, created_at=now) for code in codes], batch_size=1000
        )
        ids = dict(await Member.all().values_list("code", "id"))
        openids = {code: f"oBench{i:07d}" for i, code in enumerate(codes) if i % 2}
        await Identity.bulk_create(
            [
                Identity(kind="oa_openid", app=appid, value=o, member_id=ids[c], created_at=now)
                for c, o in openids.items()
            ],
            batch_size=1000,
        )
    finally:
        await db.close_db()
    return [(code, openids.get(code, "")) for code in codes]


def write_orders(path: Path, rows: int, members: list[tuple[str, str]], rng: random.Random) -> None:
    start = datetime(2026, 6, 1, 8, 0, tzinfo=SH)
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(
            ["external_id", "member_code", "openid", "amount_fen", "amount", "store", "paid_at"]
        )
        for n in range(rows):
            code, openid = rng.choice(members)
            fen = rng.randint(1, 200_000)
            paid = start + timedelta(minutes=rng.randint(0, 60 * 24 * 29))
            by_openid = bool(openid) and n % 3 == 0
            amount = ("", f"{fen / 100:.2f}") if n % 4 == 0 else (str(fen), "")
            out.writerow(
                [
                    f"BENCH-{n:08d}",
                    "" if by_openid else code,
                    openid if by_openid else "",
                    *amount,
                    f"S{n % 40:02d}",
                    paid.isoformat(),
                ]
            )


def run_import(config: Path, orders: Path, batch: int) -> tuple[float, float, str]:
    """Wall seconds, the import process's CPU seconds, its summary line."""
    command = [sys.executable, "-m", "bot", "--config", str(config), "orders", "import"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [*command, str(orders), "--batch", str(batch)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode not in (0, 1):
        raise SystemExit(f"import failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, cpu, done.stdout.strip().splitlines()[0]


def main() -> None:
    args = parse_args()
    stack = Stack(db=args.db)
    if args.db:
        asyncio.run(empty_postgres(args.db))
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="scrm-import-bench-") as tmp:
        data = Path(tmp)
        raw = bench_settings(ROOT / "config.example.toml", free_port(), data, stack)
        raw["security"] = {
            "mobile_key": secrets.token_hex(32),
            "mobile_hmac_key": secrets.token_hex(32),
        }
        config = data / "bench.toml"
        config.write_text(to_toml(raw), encoding="utf-8")
        url = stack.database_url(data)
        appid = next(iter(raw["accounts"].values()))["appid"]
        members = asyncio.run(seed_members(url, args.members, appid))
        orders = data / "orders.csv"
        write_orders(orders, args.rows, members, rng)
        print(
            f"{stack.name}: {args.rows:,} orders over {args.members:,} members, batch {args.batch}"
        )
        for label in ("import", "re-run"):
            elapsed, cpu, summary = run_import(config, orders, args.batch)
            rate = args.rows / elapsed
            print(
                f"  {label:7s} {elapsed:6.1f} s ({cpu:5.1f} s CPU)  {rate:9,.0f} rows/s  {summary}"
            )


if __name__ == "__main__":
    main()
