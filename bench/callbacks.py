"""Encrypted callback throughput: the full server against a bare echo ceiling and WeRoBot.

What is measured: safe-mode (AES) Official Account text callbacks to account ``demo``,
each request with its own MsgId, nonce and openid, sent by ``--connections`` keep-alive
connections for ``--seconds`` after a warm-up. ``--path`` picks the message:

- ``help``: 帮助 from ``--members`` followers in turn (every one a member before timing;
  enough of them that none reaches the 20-a-minute rate limit).
- ``signin``: 签到 from ``--members`` distinct members, each exactly once (a business
  day's sign-ins); the warm-up makes every one a member with 帮助 first, and every round
  has a fresh database, so no measured request is an "already signed in".
- ``signin-repeat``: the same, but the warm-up is 签到 too: the measured requests are
  all "already signed in today" (labelled so).
- ``signin-first``: 签到 as each member's first message ever (the member is created on
  the path).

Servers, each alone, pinned to one CPU (``--server-cpu``), on a fresh config:

- **ceiling**: ``bench/echo_server.py``, aiohttp + wechatpy doing only decrypt, parse,
  reply and encrypt — the least work a correct callback can do in one Python process.
- **werobot-<server>**: ``bench/werobot_echo.py``, a WeRoBot safe-mode echo, one server
  per ``--werobot-server`` variant (default both ``run``, WeRoBot's own ``robot.run``, and
  ``granian``): what a popular framework does with no storage. The "≥ 1× WeRoBot" target
  is judged against ``werobot-run``; the others are reported beside it.
- **full**: ``python -m bot serve`` after ``python -m bot migrate``, on ``make run``'s
  configuration (a new SQLite file, in-process cache) or, with ``--db`` (and
  ``--redis``), on PostgreSQL (+ Redis), the database re-created for every round.

The load generator (``bench/loadgen.py``, requests encrypted before timing) runs in its
own process on another CPU (``--client-cpu``). Rounds alternate the servers (the order
rotates each round); the medians of the per-round ratios are the figures to quote.
After each full round the bench counts the rows the server wrote (members, sign-ins,
points entries, recorded callbacks): that says whether 签到 really signed members in.
Every server is stopped at the end, also on Ctrl-C or SIGTERM.

Run: ``make bench`` or ``.venv/bin/python bench/callbacks.py [--path signin] [--db …]``
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs import child_env, pick_cpus, pin, running, stop
from report import Round, Target, summary, table
from stacks import ROOT, Stack, StackError, bench_settings, free_port, migrate, to_toml

BENCH = ROOT / "bench"
PYTHON = sys.executable
MAX_SECONDS = 60.0
SERVERS = ("ceiling", "werobot", "full")  # "werobot": one server per --werobot-server
WEROBOT_SERVERS = ("run", "granian", "waitress", "gunicorn-gthread", "gunicorn-gevent")
WEROBOT_DEFAULT = "run,granian"
WEROBOT_LABELS = {
    "run": "run (its own robot.run: Bottle auto = waitress)",
    "granian": "granian (8 threads; not a WeRoBot-supported server)",
}
HELP_REPLY = "可用指令"  # templates/help.j2
# Replies that mean the server did not do the work: error, busy, too fast.
REJECT_TEMPLATES = ("error", "busy", "too_fast")


@dataclass(frozen=True)
class BenchPath:
    """One message path: what the warm-up and the measured requests send."""

    content: str
    warmup_content: str
    once: bool  # the full server gets each member's measured message exactly once
    first_contact: bool  # the warm-up comes from other senders
    expect: str  # the full server's replies must contain it ("": any text)
    target: Target
    label: str


SIGNIN_TARGET = Target(vs_ceiling=0.5, vs_werobot=1.0)
PATHS = {
    "help": BenchPath("帮助", "帮助", False, False, HELP_REPLY, Target(0.85, None), "帮助"),
    "signin": BenchPath(
        "签到", "帮助", True, False, "", SIGNIN_TARGET, "签到, first sign-in of the day"
    ),
    "signin-repeat": BenchPath(
        "签到", "签到", True, False, "", SIGNIN_TARGET, "签到, ALREADY signed in today"
    ),
    "signin-first": BenchPath(
        "签到", "帮助", True, True, "", SIGNIN_TARGET, "签到 as the member's first message"
    ),
}


def rejects() -> list[str]:
    """The texts of the replies that mean failure (they have no template variables)."""
    return [(ROOT / "templates" / f"{t}.j2").read_text().strip() for t in REJECT_TEMPLATES]


def loadgen_args(name: str, args: argparse.Namespace, path: BenchPath) -> list[str]:
    """The load generator's options for one server on one path."""
    common = [f"--content={path.content}", *(f"--reject={r}" for r in rejects())]
    if name != "full":  # the echo servers keep no state: the same stream, cycled
        expect = f"echo: {path.content}"
        return [*common, f"--expect={expect}", f"--warmup={args.warmup}",
                f"--warmup-content={path.warmup_content}", f"--members={args.members}",
                f"--max-rate={args.max_rate}"]  # fmt: skip
    expect = args.expect if args.expect is not None else path.expect
    opts = [*common, f"--expect={expect}", f"--warmup-content={path.warmup_content}",
            f"--members={args.members}", f"--max-rate={args.max_rate}"]  # fmt: skip
    if not path.once:
        return [*opts, f"--warmup={max(args.warmup, args.members)}"]
    if path.first_contact:
        return [*opts, "--once", f"--warmup={args.warmup}", "--warmup-tag=oWarm"]
    return [*opts, "--once", f"--warmup={args.members}"]


def run_loadgen(
    args: argparse.Namespace, port: int, config: Path, extra: list[str], cpu: int | None
) -> dict[str, Any]:
    """Run ``bench/loadgen.py`` in its own process; return its JSON result."""
    cmd = [
        PYTHON,
        str(BENCH / "loadgen.py"),
        f"--port={port}",
        f"--config={config}",
        f"--connections={args.connections}",
        f"--seconds={args.seconds}",
        *extra,
        "--json",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True, preexec_fn=pin(cpu)
    )
    try:
        out, _ = proc.communicate(timeout=args.seconds + 300)
    finally:
        stop(proc)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"load generator failed with status {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def server_command(name: str, config: Path, port: int, args: argparse.Namespace) -> list[str]:
    """The command line of one server."""
    if name == "ceiling":
        return [PYTHON, str(BENCH / "echo_server.py"), f"--config={config}", f"--port={port}"]
    if name.startswith("werobot-"):
        return [PYTHON, str(BENCH / "werobot_echo.py"), f"--config={config}", f"--port={port}",
                f"--server={name.removeprefix('werobot-')}"]  # fmt: skip
    wrap = ["-m", "cProfile", "-o", str(Path(args.profile).resolve())] if args.profile else []
    return [PYTHON, *wrap, "-m", "bot", "serve", "--config", str(config)]


def measure(
    name: str,
    args: argparse.Namespace,
    work: Path,
    stack: Stack,
    cpus: tuple[int | None, int | None],
) -> dict[str, Any]:
    """Start one server on a fresh config (and database), load it, stop it."""
    port = free_port()
    data_dir = work / name
    data_dir.mkdir()
    config = data_dir / "config.toml"
    config.write_text(to_toml(bench_settings(Path(args.config), port, data_dir, stack)))
    if name == "full":
        stack.reset()
        migrate(config, child_env())
    print(f"{name}: starting on port {port} …", flush=True)
    log = data_dir / "server.log"
    with running(server_command(name, config, port, args), port, log, cpus[0]) as server:
        # the server's own CPU in the window (granian's workers are its children: not counted)
        extra = [*loadgen_args(name, args, PATHS[args.path]), f"--server-pid={server.pid}"]
        result = run_loadgen(args, port, config, extra, cpus[1])
    if name == "full":
        result["rows"] = stack.count_rows(data_dir)
    print(f"{name}: {line(result)}", flush=True)
    logged = (data_dir / "server.log").read_text(errors="replace").splitlines()
    if logged:  # the servers log warnings and errors only
        print(f"  server log: {len(logged)} lines; the last: " + " | ".join(logged[-3:])[:600])
    if name == "full" and result["rows"]["inbound_event"] < result["answered"]:
        missing = result["answered"] - result["rows"]["inbound_event"]
        print(f"  warning: {missing} answered callbacks have no InboundEvent row")
    for err in result["error_samples"]:
        print(f"  error: {err}")
    if result["exhausted"]:
        print("  warning: the load generator ran out of requests early; raise --max-rate")
    return result


def line(r: dict[str, Any]) -> str:
    """One server's figures on one line."""
    rows = r.get("rows")
    return (
        f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"{r['errors']} errors ({r['requests']} requests in {r['seconds']:.1f} s, "
        f"{r['checked_replies']} replies decrypted and checked)"
        + (
            f"; server CPU {r['server_cpu_ms_per_request']:.3f} ms/request"
            if r.get("server_cpu_ms_per_request") is not None
            else ""
        )
        + (
            f"; other CPU {r['other_cpu_ms_per_request']:.3f} ms/request"
            if r.get("other_cpu_ms_per_request") is not None
            else ""
        )
        + "".join(
            f"; {name} {ms:.3f}"
            for name, ms in (r.get("services_cpu_ms_per_request") or {}).items()
            if ms >= 0.005
        )
        + (f"; stolen {r['stolen_s']:.2f} s" if r.get("stolen_s") else "")
        + (f"; quiet {r['settled_s']:.1f} s after the warm-up" if r.get("settled_s") else "")
        + (f"; rows: {json.dumps(rows)}" if rows else "")
    )


def signin_note(rounds: list[Round], path: str) -> str:
    """Whether 签到 signed members in (from the sign_in rows the full rounds left)."""
    if not path.startswith("signin"):
        return ""
    full = [r["full"] for r in rounds if "full" in r]
    if not full:
        return ""
    if all(r["rows"]["sign_in"] == 0 for r in full):
        return (
            "NOTE: no sign_in rows were written: 签到 is not handled by sign-in on this "
            "commit, so these figures are the FALLBACK reply (pre-sign-in), not sign-in."
        )
    counts = ", ".join(f"{r['rows']['sign_in']} sign-ins / {r['requests']} measured" for r in full)
    note = f"sign-in rows per full round (warm-up included): {counts}"
    if path != "signin-repeat" and any(r["rows"]["sign_in"] < r["requests"] for r in full):
        note += (
            "\nWARNING: fewer sign-ins than measured 签到 in some round: not every measured "
            "request signed a member in, so these are not clean first-sign-in figures"
        )
    return note


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=tuple(PATHS), default="help")
    parser.add_argument("--db", default="", help="postgres://…/NAME_WITH_bench (re-created)")
    parser.add_argument("--redis", default="", help="redis://…/N, N ≠ 0 (flushed)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument(
        "--members",
        type=int,
        help="distinct senders (default: 5000 on help, cycled, under 20 a minute each; "
        "15000 on the sign-in paths, each once: the full server's window ends early if it "
        "gets through them all)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated subset of ceiling,werobot,full; werobot means every "
        "--werobot-server variant, werobot-<server> one of them",
    )
    parser.add_argument(
        "--werobot-server",
        default=WEROBOT_DEFAULT,
        help=f"comma-separated, each a server of its own (werobot-<server>), of "
        f"{','.join(WEROBOT_SERVERS)} (default {WEROBOT_DEFAULT})",
    )
    parser.add_argument("--expect", help="the full server's replies must contain this")
    parser.add_argument("--config", default=str(ROOT / "config.example.toml"))
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--max-rate", type=int, default=12000, help="see bench/loadgen.py")
    parser.add_argument("--profile", default="", help="run the full server under cProfile")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}]")
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    if args.members is None:
        args.members = 15000 if PATHS[args.path].once else 5000
    variants = args.werobot_server.split(",")
    if any(v not in WEROBOT_SERVERS for v in variants) or len(set(variants)) < len(variants):
        parser.error(f"--werobot-server takes distinct names of {','.join(WEROBOT_SERVERS)}")
    werobots = [f"werobot-{v}" for v in variants]
    known = ["ceiling", *werobots, "full"]
    names = args.only.split(",") if args.only else list(SERVERS)
    if not names or any(n not in SERVERS and n not in werobots for n in names):
        parser.error(f"--only takes a comma-separated subset of {','.join(['werobot', *known])}")
    args.names = [n for n in known if n in names or (n in werobots and "werobot" in names)]
    try:
        Stack(args.db, args.redis).check()
    except StackError as exc:
        parser.error(str(exc))
    return args


def _raise_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def run_rounds(args: argparse.Namespace, stack: Stack) -> list[Round]:
    """Every round, the server order rotating, each server fresh."""
    cpus = pick_cpus(args.server_cpu, args.client_cpu)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp:
        for i in range(args.rounds):
            work = Path(tmp) / f"round{i + 1}"
            work.mkdir()
            shift = i % len(args.names)
            order = args.names[shift:] + args.names[:shift]
            results = {name: measure(name, args, work, stack, cpus) for name in order}
            rounds.append({name: results[name] for name in args.names})
    return rounds


def main(argv: list[str] | None = None) -> int:
    """Measure the servers in alternating rounds and print the comparison."""
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    stack = Stack(args.db, args.redis)
    path = PATHS[args.path]
    variants = [n.removeprefix("werobot-") for n in args.names if n.startswith("werobot-")]
    under = ", ".join(WEROBOT_LABELS.get(v, v) for v in variants) or "none (not measured)"
    print(f"path {args.path} ({path.label}); full server on {stack.name}; "
          f"WeRoBot under {under}; {args.members} members")  # fmt: skip
    try:
        rounds = run_rounds(args, stack)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped")
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}")
        return 1
    print()
    print("\n".join(table(rounds)))
    print("\n".join(summary(rounds, path.target, args.connections)))
    note = signin_note(rounds, args.path)
    if note:
        print(note)
    if args.profile and "full" in args.names:
        print(f"profile of the full server (slowed by cProfile) written to {args.profile}")
    return 1 if any(r["errors"] for results in rounds for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
