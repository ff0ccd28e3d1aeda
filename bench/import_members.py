"""Members import throughput: ``python -m bot members import`` on generated rows.

Writes a CSV of ``--rows`` members (mobile, legacy code, birthday, tier, points, growth,
joined_at, channel; every tenth row without points), imports it with the real command
on a fresh database, runs it a second time (every row is then already a member), then
``points reconcile`` (must report 0 breaks). Prints rows/s for both runs.

    .venv/bin/python bench/import_members.py                    # SQLite, 100,000 rows
    .venv/bin/python bench/import_members.py --rows 20000 \\
        --db postgres://postgres@127.0.0.1:5432/bench_import --wipe

On PostgreSQL the database's ``public`` schema is DROPPED and created again (``--wipe``
is required to say so).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIERS = ("basic", "silver", "gold")


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """``rows`` distinct members with plausible values."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            [
                "mobile",
                "member_code",
                "birthday",
                "tier",
                "points",
                "growth",
                "joined_at",
                "channel",
            ]
        )
        for i in range(rows):
            writer.writerow(
                [
                    f"13{i:09d}",
                    f"LEG{i:08d}",
                    f"{rng.randint(1960, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    rng.choice(TIERS),
                    0 if i % 10 == 0 else rng.randint(1, 50_000),
                    rng.randint(0, 9_000),
                    f"{rng.randint(2015, 2025)}-{rng.randint(1, 12):02d}-01",
                    f"store:{rng.randint(1, 300):03d}",
                ]
            )


def write_config(path: Path, db_url: str) -> None:
    """config.example.toml on this database, logging warnings only."""
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    lines, section = [], ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip()
        if section == "[database]" and line.startswith("url ="):
            line = f'url = "{db_url}"'
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def wipe(db_url: str) -> None:
    """Drop and recreate PostgreSQL's public schema."""
    from tortoise import Tortoise, connections

    from storage import db

    await Tortoise.init(config=db.tortoise_config(db_url))
    await connections.get("default").execute_script(
        "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
    )
    await Tortoise.close_connections()


def bot(config: Path, *args: str) -> tuple[float, str]:
    """Run ``python -m bot``; (seconds, stdout)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    """Generate, import twice, reconcile; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", help="postgres://… (default: a temporary SQLite file)")
    parser.add_argument("--wipe", action="store_true", help="allow dropping --db's schema")
    args = parser.parse_args(argv)
    if args.db and not args.wipe:
        parser.error("--db needs --wipe: its public schema is dropped and created again")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db_url = args.db or f"sqlite://{folder / 'bench.sqlite3'}"
        stack = "PostgreSQL" if args.db else "SQLite"
        if args.db:
            asyncio.run(wipe(db_url))
        config, data = folder / "bench.toml", folder / "members.csv"
        write_config(config, db_url)
        write_csv(data, args.rows)
        bot(config, "migrate")
        first, said = bot(config, "members", "import", str(data))
        print(
            f"{stack}: first run  {args.rows:,} rows in {first:.1f} s = "
            f"{args.rows / first:,.0f} rows/s  [{said}]"
        )
        again, said = bot(config, "members", "import", str(data))
        print(
            f"{stack}: second run {args.rows:,} rows in {again:.1f} s = "
            f"{args.rows / again:,.0f} rows/s  [{said}]"
        )
        _, said = bot(config, "points", "reconcile")
        print(f"{stack}: reconcile: {said.splitlines()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
