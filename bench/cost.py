"""What one first sign-in of the day costs the full server, counted rather than timed.

Wall-clock figures on a shared VM move by a quarter from one minute to the next; counts do
not. Two counts, on ``make run``'s configuration (SQLite, in-process cache) or, with
``--db``/``--redis``, on PostgreSQL and Redis (the same throwaway-name rules as
``callbacks.py``: the database is re-created, the Redis database flushed), both of the
measured 签到 only (the warm-up's 帮助, which makes every sender a member, is not
counted), with the same load generator as ``callbacks.py``:

- default: **Python function calls per sign-in** on the server's event-loop thread
  (``cProfile`` around the measured window, the server run in this process), with the
  calls and the (profiled, so inflated) time per package. The work SQLite does in
  aiosqlite's thread is not in it, nor PostgreSQL's or Redis's own work. ``--top N``
  adds the N functions with the most calls.
- ``--instructions``: **machine instructions per sign-in**, every thread of the server
  process (``python -m bot serve`` under valgrind's callgrind, instrumentation switched on
  when the first sign-in row appears). Needs valgrind (``apt install valgrind``); takes
  about a minute for 1,000 members. The same binary, inputs and environment give the
  same count to within about 1 %, whatever else the machine is doing.

Compare two commits by running each one's own copy (``git worktree add``) one after the
other. ``bench/README.md`` has the figures.

Run: ``.venv/bin/python bench/cost.py [--members N] [--instructions] [--top N]
[--db postgres://…/NAME_WITH_bench --redis redis://…/N]``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import glob
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ (this script's directory, first on the path) holds a sop.py that would hide the
# project's sop package from the server imported below: the project first, bench/ last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))
sys.path.append(str(_BENCH))
from procs import child_env, wait_healthy  # noqa: E402
from stacks import ROOT, Stack, StackError, bench_settings, free_port, migrate, to_toml  # noqa: E402

PYTHON = sys.executable


def _config(work: Path, stack: Stack) -> tuple[Path, int]:
    stack.reset()
    port = free_port()
    config = work / "config.toml"
    config.write_text(to_toml(bench_settings(ROOT / "config.example.toml", port, work, stack)))
    migrate(config, child_env())
    return config, port


def _loadgen(config: Path, port: int, members: int, connections: int) -> list[str]:
    """帮助 once from each member (warm-up), then 签到 once from each (measured)."""
    return [
        PYTHON, str(ROOT / "bench" / "loadgen.py"), f"--port={port}", f"--config={config}",
        f"--connections={connections}", "--content=签到", "--warmup-content=帮助",
        "--expect=", "--once", f"--members={members}", f"--warmup={members}",
        "--seconds=600", "--json",
    ]  # fmt: skip


def _signed_in(stack: Stack, work: Path) -> int:
    """sign_in rows so far (0 when the table cannot be read yet)."""
    if stack.db:
        return asyncio.run(_signed_in_postgres(stack.db))
    try:
        with sqlite3.connect(f"file:{work / 'bench.sqlite3'}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM sign_in").fetchone()[0])
    except sqlite3.Error:  # not created yet, or busy
        return 0


async def _signed_in_postgres(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM sign_in"))
    finally:
        await conn.close()


async def _signed_in_async(stack: Stack, work: Path) -> int:
    """:func:`_signed_in` from inside a running loop (the PostgreSQL poll off the loop)."""
    return await asyncio.get_running_loop().run_in_executor(None, _signed_in, stack, work)


def calls(stack: Stack, members: int, connections: int, top: int, save: str = "") -> int:
    """Python calls per sign-in on the event-loop thread, with a table per package."""
    from aiohttp import web

    from bot.app import create_app
    from bot.config import load_settings
    from bot.server import new_event_loop

    with tempfile.TemporaryDirectory(prefix="scrm-cost-") as tmp:
        work = Path(tmp)
        config, port = _config(work, stack)
        settings = load_settings(config)
        profile = cProfile.Profile()

        async def run() -> None:
            runner = web.AppRunner(create_app(settings), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                load = await asyncio.create_subprocess_exec(
                    *_loadgen(config, port, members, connections),
                    stdout=subprocess.PIPE,
                    env=child_env(),
                    cwd=ROOT,
                )
                finished = asyncio.ensure_future(load.communicate())
                # polled: the first sign-in row is the start of the measured window
                while not await _signed_in_async(stack, work) and not finished.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                profile.enable()
                out, _ = await finished
                profile.disable()
                if load.returncode != 0:
                    raise RuntimeError(f"load generator failed: {out.decode()[-300:]}")
            finally:
                await runner.cleanup()

        loop = new_event_loop()
        try:
            loop.run_until_complete(run())
        finally:
            loop.close()
        signed = _signed_in(stack, work)
    stats = pstats.Stats(profile)
    if save:
        stats.dump_stats(save)
    _table(stats, members)
    if top:
        _top(stats, members, top)
    print(f"{stats.total_calls / members:.0f} Python calls per sign-in on the event-loop thread "  # type: ignore[attr-defined]
          f"({members} measured, {signed} sign_in rows)")  # fmt: skip
    return 0 if signed >= members else 1


def _package(filename: str) -> str:
    if filename == "~":
        return "(C functions)"
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(ROOT).parent)
    except ValueError:
        return f"stdlib {path.name}"


def _table(stats: pstats.Stats, members: int) -> None:
    count: collections.Counter[str] = collections.Counter()
    spent: collections.Counter[str] = collections.Counter()
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, _name), (_cc, ncalls, tottime, _ct, _callers) in raw.items():
        count[_package(filename)] += ncalls
        spent[_package(filename)] += tottime
    print(f"{'calls/sign-in':>14}{'ms/sign-in*':>13}  package (* under cProfile: inflated)")
    for name, _ in spent.most_common(15):
        print(f"{count[name] / members:>14.1f}{spent[name] * 1000 / members:>13.3f}  {name}")


def _top(stats: pstats.Stats, members: int, top: int) -> None:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(raw.items(), key=lambda item: -item[1][1])[:top]
    print(f"{'calls/sign-in':>14}{'ms/sign-in*':>13}  function")
    for (filename, line, name), (_cc, ncalls, tottime, _ct, _callers) in rows:
        where = f"{_package(filename)}:{Path(filename).name}:{line}" if filename != "~" else ""
        print(f"{ncalls / members:>14.2f}{tottime * 1000 / members:>13.4f}  {name} {where}")


def instructions(stack: Stack, members: int, connections: int, keep: str = "") -> int:
    """Instructions per sign-in (every thread) under callgrind."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("error: --instructions needs valgrind (apt install valgrind)")
        return 2
    with tempfile.TemporaryDirectory(prefix="scrm-cost-") as tmp:
        work = Path(tmp)
        config, port = _config(work, stack)
        out, log = work / "callgrind.out", work / "server.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={out}", PYTHON, "-m", "bot", "serve", "--config",
                 str(config)],
                cwd=ROOT, env=child_env(), stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_healthy(server, port, log)
            load = subprocess.Popen(
                _loadgen(config, port, members, connections),
                cwd=ROOT,
                env=child_env(),
                stdout=subprocess.PIPE,
                text=True,
            )
            while not _signed_in(stack, work) and load.poll() is None:
                time.sleep(0.01)
            _control("-i", "on", server.pid)
            load.communicate()
            _control("-i", "off", server.pid)
            _control("-d", server.pid)
        finally:
            server.terminate()
            server.wait(120)
        signed = _signed_in(stack, work)
        dumps = sorted(glob.glob(f"{out}.*"))
        if not dumps:
            print("error: callgrind wrote no dump")
            return 1
        if keep:
            shutil.copy(dumps[0], keep)
        lines = Path(dumps[0]).read_text().splitlines()
        total = sum(int(line.split()[1]) for line in lines if line.startswith("totals:"))
    print(f"{total / members / 1000:.0f} k instructions per sign-in, every thread "
          f"({members} measured, {signed} sign_in rows)")  # fmt: skip
    return 0 if signed >= members else 1


def _control(*args: str | int) -> None:
    *options, pid = args
    subprocess.run(["callgrind_control", *map(str, options), str(pid)], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    """Count, print, and exit 0 when every measured 签到 signed a member in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3000, help="sign-ins measured")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--instructions", action="store_true", help="callgrind (valgrind)")
    parser.add_argument("--top", type=int, default=0, help="also list the N most-called functions")
    parser.add_argument(
        "--save",
        default="",
        help="write the cProfile stats (or, with --instructions, the "
        "callgrind dump, for callgrind_annotate) to this file",
    )
    parser.add_argument("--db", default="", help="postgres://…/NAME_WITH_bench (re-created)")
    parser.add_argument("--redis", default="", help="redis://…/N, N ≠ 0 (flushed)")
    args = parser.parse_args(argv)
    if args.members < 1 or args.connections < 1 or args.top < 0:
        parser.error("--members and --connections must be at least 1, --top at least 0")
    stack = Stack(args.db, args.redis)
    try:
        stack.check()
    except StackError as exc:
        parser.error(str(exc))
    try:
        if args.instructions:
            return instructions(stack, args.members, min(args.connections, 8), args.save)
        return calls(stack, args.members, args.connections, args.top, args.save)
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
