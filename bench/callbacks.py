"""Encrypted callback throughput: the full server against a bare echo ceiling.

What is measured: safe-mode (AES) Official Account text callbacks, the 帮助 (help)
message to account ``demo``, each request with its own MsgId, nonce and openid, sent by
``--connections`` keep-alive connections for ``--seconds`` after a warm-up.

- **ceiling**: ``bench/echo_server.py``, aiohttp + wechatpy doing only decrypt, parse,
  reply and encrypt — the least work a correct callback can do in one Python process.
- **full**: ``python -m bot serve`` on a fresh SQLite file (migrated by ``serve``), with
  the example config's accounts: signature and freshness checks, dedupe, InboundEvent
  recording, routing, middlewares (rate limit, member lock and resolution), the help
  template and the encrypted reply.

Each server runs alone, pinned to one CPU (``--server-cpu``); the load generator
(``bench/loadgen.py``, a lean raw-asyncio HTTP/1.1 client with requests encrypted before
timing) runs in its own process on another CPU (``--client-cpu``). Both servers are
stopped at the end, also on Ctrl-C.

How to read it: ``ratio`` is full req/s ÷ ceiling req/s on the same machine in the same
run, so it does not depend on how fast the machine is; it says how much of the hot
path's budget the server's own work (storage, dedupe, routing) takes. p50/p99 are
per-request latencies seen by the client at that concurrency. The target is printed
with the table. Any error (non-200, or a sampled reply that does not decrypt to the
expected text) makes the figures suspect; they are listed.

Run: ``make bench`` or ``.venv/bin/python bench/callbacks.py [--only full|ceiling]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
TARGET = "target: ratio ≥ 0.85, p99 < 50 ms at 32 connections"
TARGET_RATIO = 0.85
TARGET_P99_MS = 50.0
MAX_SECONDS = 60.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
CEILING_REPLY = "echo: 帮助"  # bench/echo_server.py echo_text("帮助")
FULL_REPLY = "可用指令"  # templates/help.j2


# --- configuration --------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_settings(example: Path, port: int, data_dir: Path) -> dict[str, Any]:
    """The example config with a fresh SQLite file, quiet logs and no dev slowdowns."""
    with example.open("rb") as fh:
        raw: dict[str, Any] = tomllib.load(fh)
    raw.setdefault("server", {}).update(host="127.0.0.1", port=port)
    raw.setdefault("database", {})["url"] = f"sqlite://{data_dir / 'bench.sqlite3'}"
    raw.setdefault("redis", {})["url"] = ""
    raw.setdefault("log", {})["level"] = "WARNING"
    raw.setdefault("dev", {}).update(time_travel=False, slow_keyword="")
    if raw["dev"].get("fake_platform"):
        base = f"http://127.0.0.1:{port}/_fake"
        raw.setdefault("api", {}).update(
            oa_base_url=f"{base}/oa", wecom_base_url=f"{base}/wecom", mp_base_url=f"{base}/mp"
        )
    return raw


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Serialise nested tables of scalars (all the settings file uses) as TOML."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and scalars else []
    lines += [f"{key} = {_toml_value(value)}" for key, value in scalars.items()]
    text = "\n".join(lines) + ("\n\n" if lines else "")
    for key, table in tables.items():
        text += to_toml(table, f"{prefix}.{key}" if prefix else key)
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


# --- processes ------------------------------------------------------------------------


def pin(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpu`` (None: no pinning)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def pick_cpus(server_cpu: int, client_cpu: int) -> tuple[int | None, int | None]:
    """The CPUs to pin to, or (None, None) where affinity is unavailable."""
    if not hasattr(os, "sched_setaffinity"):
        print("note: no os.sched_setaffinity here; processes are not pinned")
        return None, None
    allowed = os.sched_getaffinity(0)
    if server_cpu not in allowed or client_cpu not in allowed or server_cpu == client_cpu:
        print(f"note: CPUs {server_cpu},{client_cpu} not both available ({sorted(allowed)})")
        return None, None
    return server_cpu, client_cpu


def child_env() -> dict[str, str]:
    """Our environment without the variables that would override the bench config."""
    drop = {"SCRM_DATABASE_URL", "SCRM_REDIS_URL", "SCRM_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_healthy(proc: subprocess.Popen[Any], port: int, log: Path) -> None:
    """Poll ``GET /healthz`` until 200; fail if the server exits or takes too long."""
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server not healthy after {START_TIMEOUT:.0f}s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    """The last lines of a server log."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running(cmd: list[str], port: int, log: Path, cpu: int | None) -> Iterator[None]:
    """A server subprocess, healthy inside the block and always stopped after it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the server
            preexec_fn=pin(cpu),
        )
        try:
            wait_healthy(proc, port, log)
            yield
        finally:
            stop(proc)


def run_loadgen(
    args: argparse.Namespace, port: int, config: Path, expect: str, cpu: int | None
) -> dict[str, Any]:
    """Run ``bench/loadgen.py`` in its own process; return its JSON result."""
    cmd = [
        PYTHON,
        str(BENCH / "loadgen.py"),
        f"--port={port}",
        f"--config={config}",
        f"--connections={args.connections}",
        f"--seconds={args.seconds}",
        f"--warmup={max(args.warmup, args.members)}",
        f"--members={args.members}",
        f"--max-rate={args.max_rate}",
        f"--expect={expect}",
        "--json",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True, preexec_fn=pin(cpu)
    )
    try:
        out, _ = proc.communicate(timeout=args.seconds + 180)
    finally:
        stop(proc)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"load generator failed with status {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# --- the two servers ------------------------------------------------------------------


def server_command(name: str, config: Path, port: int, profile: str) -> list[str]:
    """The command line of the ceiling or the full server."""
    if name == "ceiling":
        return [PYTHON, str(BENCH / "echo_server.py"), f"--config={config}", f"--port={port}"]
    wrap = ["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else []
    return [PYTHON, *wrap, "-m", "bot", "serve", "--config", str(config)]


def measure(
    name: str, args: argparse.Namespace, work: Path, cpus: tuple[int | None, int | None]
) -> dict[str, Any]:
    """Start one server on a fresh config, load it, stop it; return the loadgen result."""
    port = free_port()
    data_dir = work / name
    data_dir.mkdir()
    config = data_dir / "config.toml"
    config.write_text(to_toml(bench_settings(Path(args.config), port, data_dir)))
    expect = CEILING_REPLY if name == "ceiling" else FULL_REPLY
    profile = args.profile if name == "full" else ""
    print(f"{name}: starting on port {port} …", flush=True)
    with running(
        server_command(name, config, port, profile), port, data_dir / "server.log", cpus[0]
    ):
        result = run_loadgen(args, port, config, expect, cpus[1])
    print(f"{name}: {line(result)}", flush=True)
    for err in result["error_samples"]:
        print(f"  error: {err}")
    if result["exhausted"]:
        print("  warning: the load generator ran out of requests early; raise --max-rate")
    return result


def line(r: dict[str, Any]) -> str:
    """One server's figures on one line."""
    return (
        f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"{r['errors']} errors ({r['requests']} requests in {r['seconds']:.1f} s, "
        f"{r['checked_replies']} replies decrypted and checked)"
    )


# --- report ---------------------------------------------------------------------------


def report(rounds: list[dict[str, dict[str, Any]]], connections: int) -> None:
    """The side-by-side table per round, the median ratio and the target.

    Rounds alternate ceiling and full on fresh servers, so a noisy neighbour on this
    shared machine hits both; the median of the per-round ratios is the figure to quote.
    """
    print()
    print(f"{'round':<6}{'server':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    ratios, p99s = [], []
    for i, results in enumerate(rounds, 1):
        for name, r in results.items():
            print(
                f"{i:<6}{name:<10}{r['rps']:>10.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
                f"{r['errors']:>8}"
            )
        full, ceiling = results.get("full"), results.get("ceiling")
        if full:
            p99s.append(full["p99_ms"])
        if full and ceiling and ceiling["rps"]:
            ratios.append(full["rps"] / ceiling["rps"])
    if ratios:
        ratio = statistics.median(ratios)
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"ratio full/ceiling (req/s): median {ratio:.2f} of [{listed}]", end="")
        print(f" at {connections} connections")
        print(_verdict(ratio, statistics.median(p99s)))
    print(TARGET)


def _verdict(ratio: float, p99: float) -> str:
    ok_ratio = ratio >= TARGET_RATIO
    ok_p99 = not math.isnan(p99) and p99 < TARGET_P99_MS
    return f"ratio {'met' if ok_ratio else 'NOT met'}, full p99 {'met' if ok_p99 else 'NOT met'}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating ceiling/full rounds")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument(
        "--members",
        type=int,
        default=2000,
        help="distinct senders; the warm-up makes each a member first (steady state)",
    )
    parser.add_argument("--only", choices=("full", "ceiling"))
    parser.add_argument("--config", default=str(ROOT / "config.example.toml"))
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--max-rate", type=int, default=5000, help="see bench/loadgen.py")
    parser.add_argument(
        "--profile", default="", help="run the full server under cProfile, writing this file"
    )
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}]")
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    return args


def _raise_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    """Measure the ceiling, then the full server, and print the comparison."""
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    cpus = pick_cpus(args.server_cpu, args.client_cpu)
    names = [args.only] if args.only else ["ceiling", "full"]
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp:
            for i in range(args.rounds):
                work = Path(tmp) / f"round{i + 1}"
                work.mkdir()
                rounds.append({name: measure(name, args, work, cpus) for name in names})
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped")
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}")
        return 1
    report(rounds, args.connections)
    if args.profile and "full" in names:
        print(f"profile of the full server (slowed by cProfile) written to {args.profile}")
    return 1 if any(r["errors"] for results in rounds for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
