"""A lean HTTP/1.1 load generator for encrypted Official Account text callbacks.

Every request is signed and AES-encrypted before timing starts (``bot.devtools.signer``,
exactly as WeChat does), each with its own MsgId, nonce and openid (so neither dedupe
nor the per-member rate limit ever short-cuts the work) and a timestamp of "now".
``--connections`` keep-alive connections on raw asyncio streams send them back to back:
the request bytes are pre-built and a response is read as a status line and headers up
to CRLFCRLF, then Content-Length bytes, so the client costs far less than the server.

A warm-up of ``--warmup`` requests runs first, then ``--seconds`` of measurement. Every
response must be 200; every ``--sample-every``-th reply is decrypted (after timing) and
must contain ``--expect``. Prints req/s, p50, p99 and errors (``--json``: one JSON line).
With ``--server-pid`` (Linux), also the server process's CPU time (user + system, all its
threads) over the measured window, in total and per measured request.

Run: ``.venv/bin/python bench/loadgen.py --port 8080 --config config.example.toml``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import OfficialAccountSettings, load_settings
from bot.devtools.signer import open_reply, sign_oa
from bot.wechat.crypto import MessageCrypto

REQUEST_TIMEOUT = 10.0
WARMUP_TIMEOUT = 240.0
SETTLE_LIMIT = 30.0  # seconds to wait for a quiet server after the warm-up
MAX_ERRORS_SHOWN = 10

_TEXT_XML = (
    "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
    "<FromUserName><![CDATA[{openid}]]></FromUserName>"
    "<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
)


# --- building requests (before timing) ------------------------------------------------


def build_requests(
    account: OfficialAccountSettings,
    target: str,
    path: str,
    content: str,
    count: int,
    members: int = 2000,
    *,
    run: int = 0,
    first: int = 0,
    tag: str = "oBench",
) -> list[bytes]:
    """``count`` distinct, signed and encrypted POST requests with a timestamp of now.

    Request ``i`` (from ``first``) comes from follower ``i % members`` of this run (openid
    ``<tag><run><n>``), so a warm-up built from 0 and the measured requests built from
    where it ended share senders: with ``warmup == members`` the warm-up reaches every
    member once and the measured requests then take them in the same order. MsgIds and
    nonces are unique per ``run`` and ``i``.
    """
    ts = int(time.time())
    run = run or time.time_ns() // 1000  # unique per run: MsgIds never repeat
    requests = []
    for i in range(first, first + count):
        openid = f"{tag}{run:x}{i % members:06d}"
        xml = _TEXT_XML.format(openid=openid, ts=ts, content=content, msg_id=run * 10**7 + i)
        signed = sign_oa(account, xml, ts, nonce=f"{run % 10**6}{i:07d}", encrypt=True)
        body = signed.body.encode()
        head = (
            f"POST {path}?{_query(signed.query)} HTTP/1.1\r\nHost: {target}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def _query(params: dict[str, str]) -> str:
    # Every value is hex, digits or "aes": nothing to escape (and urlencode is slow).
    return "&".join(f"{k}={v}" for k, v in params.items())


# --- the client -----------------------------------------------------------------------


class HttpError(Exception):
    """A response we could not read or did not expect."""


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.streams = await asyncio.open_connection(self.host, self.port)
        return self.streams

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
        self.streams = None

    async def roundtrip(self, data: bytes) -> tuple[int, bytes]:
        """Send one pre-built request; return (status, body)."""
        reader, writer = self.streams or await self.open()
        writer.write(data)
        head = await reader.readuntil(b"\r\n\r\n")
        status, length, close = _parse_head(head)
        body = await reader.readexactly(length)
        if close:
            self.close()
        return status, body


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    try:
        status = int(head[9:12])
    except ValueError:
        raise HttpError(f"bad status line {head[:40]!r}") from None
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start < 0:
        raise HttpError("response has no Content-Length")
    end = lower.index(b"\r\n", start + 2)
    length = int(lower[start + 17 : end])
    return status, length, b"\r\nconnection: close" in lower


# --- running --------------------------------------------------------------------------


@dataclass
class Run:
    """Shared state of one load run."""

    requests: list[bytes]
    sample_every: int
    next_index: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    samples: dict[int, bytes] = field(default_factory=dict)
    warmup_samples: dict[int, bytes] = field(default_factory=dict)
    completed: int = 0
    answered: int = 0  # warm-up included: every 200 response
    server_cpu: float | None = None  # the server's CPU seconds in the window (--server-pid)
    settled: float = 0.0  # seconds waited after the warm-up for the server to be quiet
    other_cpu: float | None = None  # the machine's busy CPU seconds in the window, less the
    # server's and the load generator's: the database, Redis, anything else
    stolen: float | None = None  # CPU seconds the hypervisor took in the window
    services_cpu: dict[str, float] = field(default_factory=dict)  # by process name

    def take(self, limit: int) -> int | None:
        """The next request index below ``limit``, or None."""
        if self.next_index >= limit:
            return None
        self.next_index += 1
        return self.next_index - 1


async def _one(conn: Connection, run: Run, index: int, record: bool) -> None:
    start = time.perf_counter_ns()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            status, body = await conn.roundtrip(run.requests[index])
    except (OSError, TimeoutError, asyncio.IncompleteReadError, HttpError) as exc:
        conn.close()
        run.errors.append(f"request {index}: {type(exc).__name__}: {exc}")
        return
    elapsed = time.perf_counter_ns() - start
    if status != 200:
        run.errors.append(f"request {index}: HTTP {status}: {body[:120]!r}")
    else:
        run.answered += 1
    if record:
        run.latencies_ns.append(elapsed)
        run.completed += 1
    if index % run.sample_every == 0:
        (run.samples if record else run.warmup_samples)[index] = body


async def _worker(conn: Connection, run: Run, limit: int, deadline: float, record: bool) -> None:
    while time.perf_counter() < deadline:
        index = run.take(limit)
        if index is None:
            return
        await _one(conn, run, index, record)


def cpu_seconds(pid: int | None) -> float | None:
    """A process's CPU time so far (utime + stime of all its threads), or None when unknown."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_seconds() -> tuple[float, float] | None:
    """CPU seconds the whole machine has been busy and has had stolen (by the hypervisor)
    so far, from ``/proc/stat``; None where there is none."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(ticks) - ticks[3] - ticks[4] - ticks[7]
    return busy / tick, ticks[7] / tick


SERVICES = ("postgres", "redis-server")  # process names whose CPU the report shows apart


def services_seconds() -> dict[str, float]:
    """CPU seconds so far of the processes named in SERVICES (every PostgreSQL backend
    alive now, Redis), by name; empty where /proc is missing."""
    found = dict.fromkeys(SERVICES, 0.0)
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return {}
    for pid in entries:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name in found:
            found[name] += cpu_seconds(int(pid)) or 0.0
    return found


async def settle(pid: int | None, limit: float = SETTLE_LIMIT) -> float:
    """Wait until the server has finished the warm-up's background work; the seconds waited.

    The warm-up's requests leave work behind them (InboundEvent rows and activity times
    written in batches after the replies): measured from the last warm-up reply, that work
    would be charged to the measured requests. Quiet means at most one clock tick (10 ms
    on Linux) of CPU in each of two 0.1 s samples in a row; after ``limit`` seconds the
    measurement starts anyway.
    """
    began = time.perf_counter()
    last = cpu_seconds(pid)
    if last is None:
        return 0.0
    quiet = 0
    while quiet < 2 and time.perf_counter() - began < limit:
        await asyncio.sleep(0.1)
        now = cpu_seconds(pid)
        if now is None:
            break
        quiet = quiet + 1 if now - last < 0.015 else 0
        last = now
    return time.perf_counter() - began


async def drive(
    host: str,
    port: int,
    run: Run,
    connections: int,
    warmup: int,
    seconds: float,
    server_pid: int | None = None,
) -> float:
    """Warm up, then measure for ``seconds``; return the measured wall time.

    With ``server_pid``, ``run.server_cpu`` gets that process's CPU seconds in the window.
    """
    conns = [Connection(host, port) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in conns))
    try:
        far = time.perf_counter() + WARMUP_TIMEOUT
        await asyncio.gather(*(_worker(c, run, warmup, far, False) for c in conns))
        if run.next_index < warmup:
            run.errors.append(f"warm-up unfinished after {WARMUP_TIMEOUT:.0f}s: {run.next_index}")
            run.next_index = warmup  # never measure a warm-up request
        gc.collect()
        run.settled = await settle(server_pid)
        cpu_before = cpu_seconds(server_pid)
        machine_before, own_before = machine_seconds(), cpu_seconds(os.getpid())
        services_before = services_seconds()
        started = time.perf_counter()
        deadline = started + seconds
        total = len(run.requests)
        await asyncio.gather(*(_worker(c, run, total, deadline, True) for c in conns))
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(server_pid)
        machine_after, own_after = machine_seconds(), cpu_seconds(os.getpid())
        services_after = services_seconds()
        # a backend that exited in the window is missing from one side: counted from 0
        run.services_cpu = {
            name: services_after[name] - services_before.get(name, 0.0) for name in services_after
        }
        if cpu_before is not None and cpu_after is not None:
            run.server_cpu = cpu_after - cpu_before
            if machine_before and machine_after and own_before is not None and own_after:
                busy = machine_after[0] - machine_before[0]
                run.other_cpu = busy - run.server_cpu - (own_after - own_before)
                run.stolen = machine_after[1] - machine_before[1]
        return elapsed
    finally:
        for c in conns:
            c.close()


# --- checking and reporting -----------------------------------------------------------


def check_samples(
    run: Run, crypto: MessageCrypto, expect: str, reject: list[str]
) -> tuple[int, Counter[str]]:
    """Decrypt the sampled replies; record an error for each that is wrong.

    A measured reply must contain ``expect`` (any text when empty); no reply, warm-up
    included, may contain a ``reject`` text (the error, busy and too-fast replies).
    Returns how many were checked and the measured replies by kind (first line, digits
    as ``#``), so a report can say which path answered.
    """
    kinds: Counter[str] = Counter()
    samples = [(i, b, True) for i, b in run.samples.items()]
    samples += [(i, b, False) for i, b in run.warmup_samples.items()]
    for index, body, measured in sorted(samples):
        try:
            plain = _reply_content(open_reply(crypto, body.decode()))
        except Exception as exc:  # any failure to open the reply is a benchmark error
            run.errors.append(f"sample {index}: cannot open reply: {exc}: {body[:120]!r}")
            continue
        bad = [r for r in reject if r in plain]
        if bad or (measured and expect not in plain):
            why = f"contains {bad[0]!r}" if bad else f"lacks {expect!r}"
            run.errors.append(f"sample {index}: reply {why}: {plain[:200]!r}")
        if measured:
            kinds[
                re.sub(r"\d+", "#", plain.strip().splitlines()[0] if plain.strip() else "")[:40]
            ] += 1
    return len(samples), kinds


def _reply_content(xml: str) -> str:
    """The Content of a text reply (the whole XML for anything else)."""
    start = xml.find("<Content><![CDATA[")
    end = xml.find("]]></Content>", start)
    return xml[start + 18 : end] if start >= 0 and end > start else xml


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of nanosecond values, in milliseconds."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[rank] / 1e6


def summary(
    run: Run, elapsed: float, checked: tuple[int, Counter[str]], exhausted: bool
) -> dict[str, object]:
    """The figures of one run."""
    lat = sorted(run.latencies_ns)
    return {
        "requests": run.completed,
        "answered": run.answered,
        "seconds": round(elapsed, 3),
        "rps": round(run.completed / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "max_ms": round(lat[-1] / 1e6, 2) if lat else float("nan"),
        "errors": len(run.errors),
        "error_samples": run.errors[:MAX_ERRORS_SHOWN],
        "checked_replies": checked[0],
        "reply_kinds": dict(checked[1].most_common(5)),
        "exhausted": exhausted,
        "server_cpu_s": None if run.server_cpu is None else round(run.server_cpu, 3),
        "settled_s": round(run.settled, 2),
        "other_cpu_ms_per_request": (
            round(run.other_cpu * 1000 / run.completed, 3)
            if run.other_cpu is not None and run.completed
            else None
        ),
        "stolen_s": None if run.stolen is None else round(run.stolen, 2),
        "services_cpu_ms_per_request": {
            name: round(seconds * 1000 / run.completed, 3)
            for name, seconds in run.services_cpu.items()
            if run.completed
        },
        "server_cpu_ms_per_request": (
            round(run.server_cpu * 1000 / run.completed, 3)
            if run.server_cpu is not None and run.completed
            else None
        ),
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", default="config.example.toml")
    parser.add_argument("--account", default="demo")
    parser.add_argument("--content", default="帮助", help="the text message sent")
    parser.add_argument(
        "--expect", default="可用指令", help="measured sampled replies must contain it ('': any)"
    )
    parser.add_argument(
        "--reject", action="append", default=[], help="no sampled reply may contain it"
    )
    parser.add_argument("--warmup-content", help="the warm-up's text (default: --content)")
    parser.add_argument(
        "--warmup-tag",
        default="oBench",
        help="openid prefix of the warm-up senders; another than the measured senders' "
        "(oBench) makes the measured senders first contacts",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="measure one request per member (--members of them), then stop: each member "
        "sends the measured text once (a daily sign-in); the run may end before --seconds",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--members", type=int, default=2000, help="distinct senders")
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument(
        "--max-rate",
        type=int,
        default=5000,
        help="requests pre-built per measured second (the run stops early if exhausted)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument(
        "--server-pid", type=int, help="report this process's CPU time over the window (Linux)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build, drive, check and print."""
    args = _parse_args(argv)
    account = load_settings(args.config).accounts[args.account]
    measured = args.members if args.once else int(args.max_rate * args.seconds)
    count = args.warmup + measured
    built = time.perf_counter()
    target, path = f"{args.host}:{args.port}", f"/wechat/{args.account}"
    run_id = time.time_ns() // 1000
    warm = args.warmup_content if args.warmup_content is not None else args.content
    requests = build_requests(
        account, target, path, warm, args.warmup, args.members, run=run_id, tag=args.warmup_tag
    )
    requests += build_requests(
        account,
        target,
        path,
        args.content,
        measured,
        args.members,
        run=run_id,
        first=args.warmup,
    )
    print(f"built {count} requests in {time.perf_counter() - built:.1f}s", file=sys.stderr)
    gc.collect()
    gc.freeze()
    run = Run(requests, args.sample_every)
    host = args.host
    elapsed = asyncio.run(
        drive(host, args.port, run, args.connections, args.warmup, args.seconds, args.server_pid)
    )
    crypto = MessageCrypto(account.token, account.encoding_aes_key, account.appid)
    checked = check_samples(run, crypto, args.expect, args.reject)
    result = summary(run, elapsed, checked, run.next_index >= count and not args.once)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_human(result)
    return 0


def _print_human(result: dict[str, object]) -> None:
    print(
        f"{result['rps']} req/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
        f"errors {result['errors']}  ({result['requests']} requests in {result['seconds']} s, "
        f"{result['checked_replies']} replies checked)"
    )
    if result["server_cpu_ms_per_request"] is not None:
        print(f"  server CPU {result['server_cpu_ms_per_request']} ms per request")
    for kind, n in result["reply_kinds"].items():  # type: ignore[attr-defined]
        print(f"  {n} sampled replies: {kind}")
    for line in result["error_samples"]:  # type: ignore[attr-defined]
        print(f"  error: {line}")
    if result["exhausted"]:
        print("  warning: ran out of pre-built requests; raise --max-rate")


if __name__ == "__main__":
    sys.exit(main())
