"""``python -m bot broadcast create|preview|start|status|pause|resume|cancel|report``.

Broadcasts (群发, docs/broadcasts.md) from the command line, audited under ``--actor``
(default ``cli``) as ``members adjust-points`` is. ``start`` enqueues the audience in
this process; the rows are sent by whichever sender runs on the database: the server's
embedded sender (``make run``) or ``python -m bot worker``, which poll for new rows every
second. ``start --wait`` and ``status --watch`` poll the database and draw a progress
bar (rows final / total, counts per status) until the broadcast is done, paused or
cancelled; ``--send`` runs a sender in this process meanwhile (when no other sender holds
the database), and without it a hint says so when no sender seems to take the rows.
Bad input is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from bot.app import build_services
from bot.cli_members import MAX_ACTOR
from bot.cli_segments import compiled_rule, read_rule
from bot.cli_tiers import parse_at
from bot.config import Settings
from bot.context import Services
from bot.outbox.lock import SenderLock
from bot.outbox.sender import Sender
from bot.progress import ProgressBar
from bot.services.broadcasts import BroadcastError, Reach
from sop import segments
from storage.models import Broadcast, OutboxMessage
from storage.repos import broadcasts as repo
from storage.repos import segments as segments_repo
from storage.timeutil import utc

STOPPED = ("done", "cancelled", "paused")
NO_SENDER = (
    "no sender seems to be taking rows: run the server (make run) or "
    "`python -m bot worker`, or wait with --send"
)


def _fail(message: str) -> Exception:
    from bot.cli import CliError

    return CliError(message)


@asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[Services]:
    services = build_services(settings)
    try:
        yield services
    finally:
        await services.cache.close()


def _actor(args: argparse.Namespace) -> str:
    if not 0 < len(args.actor) <= MAX_ACTOR:
        raise _fail(f"--actor must be 1 to {MAX_ACTOR} characters")
    return str(args.actor)


def _variables(pairs: list[str] | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise _fail(f"--var {pair!r} is not NAME=VALUE")
        values[name.strip()] = value
    return values


def describe_reach(reach: Reach | Mapping[str, Any]) -> str:
    """``120 members, 100 reached; excluded: no_window 15, opted_out 5``."""
    found = reach.as_dict() if isinstance(reach, Reach) else reach
    line = f"{found.get('total', 0):,} members, {found.get('reached', 0):,} reached"
    excluded = found.get("excluded") or {}
    if excluded:
        line += "; excluded: " + ", ".join(f"{k} {v:,}" for k, v in excluded.items())
    return line


def _counts(rows: Mapping[str, int]) -> str:
    return " · ".join(f"{status} {n:,}" for status, n in rows.items()) or "no rows yet"


async def create_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """A draft broadcast of a saved segment or a rule file (scheduled with --at)."""
    actor = _actor(args)
    content = {"variables": _variables(args.var)} if args.var else {}
    async with _services(settings) as services:
        service = services.broadcasts
        now = services.clock.now()
        at = parse_at(args.at, settings)
        if at is not None and at <= now:
            raise _fail(f"--at {args.at!r} is not in the future")
        segment_id, rule = None, None
        if args.segment is not None:
            row = await segments_repo.get(args.segment)
            if row is None:
                raise _fail(f"no saved segment named {args.segment!r}")
            segment_id = int(row.id)
        else:
            parsed = compiled_rule(read_rule(args.rule), args.rule, settings, now, args.kind)
            rule = segments.dump_rule(parsed)
        account = args.account if args.account is not None else next(iter(settings.accounts), "")
        try:
            made = await service.create(
                args.name,
                args.channel,
                actor=actor,
                template=args.template,
                content=content,
                kind=args.kind,
                account=account,
                segment_id=segment_id,
                rule=rule,
            )
            if at is not None:
                await service.schedule(int(made.id), at, actor=actor)
            reach = await service.preview(int(made.id))
        except BroadcastError as exc:
            raise _fail(str(exc)) from None
    when = f"scheduled for {at.astimezone(settings.tz):%Y-%m-%d %H:%M}" if at else "draft"
    print(f"broadcast {made.id} created ({when}): {made.channel}, {made.kind}")
    print(f"expected reach: {describe_reach(reach)}")
    return 0


async def preview_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """The expected reach now, with who is excluded and why."""
    async with _services(settings) as services:
        try:
            b = await services.broadcasts.get(args.id)
            reach = await services.broadcasts.preview(args.id)
        except BroadcastError as exc:
            raise _fail(str(exc)) from None
    print(f"broadcast {b.id} {b.name!r} ({b.channel}, {b.kind}, {b.state})")
    print(f"expected reach: {describe_reach(reach)}")
    return 0


async def start_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """Start sending: enqueue here; --wait: watch (and with --send, send) until done."""
    actor = _actor(args)
    async with _services(settings) as services, _sending(services, args.send) as sending:
        try:
            reach = await services.broadcasts.start(args.id, actor=actor)
        except BroadcastError as exc:
            raise _fail(str(exc)) from None
        print(f"broadcast {args.id} sending: {describe_reach(reach)}")
        if not (args.wait or sending):
            print(f"the running sender delivers it; watch: broadcast status {args.id} --watch")
            return 0
        return await _watch(services, args, sending)


async def status_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """State and rows per status; --watch: a progress bar until done, paused or cancelled."""
    async with _services(settings) as services, _sending(services, args.send) as sending:
        if args.watch or sending:
            return await _watch(services, args, sending)
        try:
            current = await services.broadcasts.status(args.id)
        except BroadcastError as exc:
            raise _fail(str(exc)) from None
    b = await Broadcast.get(id=args.id)
    print(f"broadcast {b.id} {b.name!r} ({b.channel}, {b.kind}): {current['state']}")
    if b.reach:
        enqueue = "" if b.reach.get("enqueued", True) else " (still enqueueing)"
        print(f"reach: {describe_reach(b.reach)}{enqueue}")
    print(f"rows: {_counts(current['rows'])}")
    return 0


@asynccontextmanager
async def _sending(services: Services, wanted: bool) -> AsyncIterator[bool]:
    """With ``wanted``, a sender in this process (unless another holds the database);
    whether this process sends."""
    if not wanted:
        yield False
        return
    lock = SenderLock(services.settings.database.url)
    if not lock.acquire():
        print("another sender (a server or worker) sends on this database; watching it")
        yield False
        return
    await services.clients.start()
    sender = Sender.for_services(services)
    services.broadcasts.wake = sender.wake
    task = asyncio.create_task(sender.run(), name="cli-sender")
    try:
        yield True
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await services.clients.close()
        lock.release()


def _no_sender(services: Services) -> bool:
    """On SQLite: no process holds the sender lock (PostgreSQL: unknown, False)."""
    lock = SenderLock(services.settings.database.url)
    if lock.path is None or not lock.acquire():
        return False
    lock.release()
    return True


async def _waiting(services: Services, broadcast_id: int) -> str:
    """``3 rows wait until 08:00 (quiet hours)`` when pending rows are due later, else ""."""
    later = OutboxMessage.filter(
        group_key=repo.group_key(broadcast_id),
        status="pending",
        due_at__gt=utc(services.clock.now()),
    )
    first = await later.order_by("due_at").first()
    if first is None:
        return ""
    when = first.due_at.astimezone(services.settings.tz).strftime("%Y-%m-%d %H:%M")
    reason = f" ({first.reason})" if first.reason else ""
    return f"{await later.count():,} rows wait until {when}{reason}"


async def _watch(services: Services, args: argparse.Namespace, sending: bool) -> int:
    """Poll the broadcast every --interval seconds, drawing the bar, until it stops."""
    service = services.broadcasts
    try:
        if (await service.get(args.id)).state == "draft":
            raise _fail(f"broadcast {args.id} is a draft: start it first (broadcast start)")
    except BroadcastError as exc:
        raise _fail(str(exc)) from None
    bar = ProgressBar(sys.stderr, {"final": 0})
    started = last_change = time.monotonic()
    last_final, hinted = -1, False
    while True:
        try:
            current = await service.status(args.id)
        except BroadcastError as exc:
            raise _fail(str(exc)) from None
        rows: dict[str, int] = current["rows"]
        b = await Broadcast.get(id=args.id)
        final = sum(n for status, n in rows.items() if status in repo.FINAL)
        bar.totals["final"] = max(int(b.reach.get("total", 0)), sum(rows.values()))
        bar.update("final", final, _counts(rows))
        if current["state"] in STOPPED:
            break
        moment = time.monotonic()
        if final != last_final:
            last_final, last_change = final, moment
        stalled = moment - last_change >= args.hint_after or _no_sender(services)
        if not hinted and stalled and final < sum(rows.values()):
            note = await _waiting(services, args.id) or ("" if sending else NO_SENDER)
            if note:
                bar.close()
                print(note, file=sys.stderr)
                hinted = True
        if args.timeout is not None and moment - started >= args.timeout:
            bar.close()
            print(f"broadcast {args.id} still {current['state']} after {args.timeout:g} s")
            return 1
        await asyncio.sleep(args.interval)
    bar.close()
    print(f"broadcast {args.id} {current['state']}: {_counts(rows)}")
    return 0


async def _change(settings: Settings, args: argparse.Namespace, action: str, moved: str) -> int:
    actor = _actor(args)
    async with _services(settings) as services:
        try:
            rows = await getattr(services.broadcasts, action)(args.id, actor=actor)
            state = (await services.broadcasts.get(args.id)).state
        except BroadcastError as exc:
            raise _fail(str(exc)) from None
    print(f"broadcast {args.id} {state}: {rows:,} rows {moved}")
    return 0


async def pause_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """sending → paused: pending rows held (rows already sending finish)."""
    return await _change(settings, args, "pause", "held")


async def resume_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """paused → sending: held rows pending again."""
    return await _change(settings, args, "resume", "released")


async def cancel_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """→ cancelled: pending and held rows cancelled (sent rows stay sent)."""
    return await _change(settings, args, "cancel", "cancelled")


async def report_broadcast(settings: Settings, args: argparse.Namespace) -> int:
    """sent / failed / unknown / skipped with reasons, per channel and staff; --json."""
    async with _services(settings) as services:
        try:
            report = await services.broadcasts.report(args.id)
        except BroadcastError as exc:
            raise _fail(str(exc)) from None
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True, default=str))
        return 0
    for line in render_report(report):
        print(line)
    return 0


def render_report(report: Mapping[str, Any]) -> list[str]:
    """The report as text: state, reach, each channel's statuses with reasons, staff, mass."""
    lines = [f"broadcast {report['id']} {report['state']}"]
    if report.get("reach"):
        lines.append(f"reach: {describe_reach(report['reach'])}")
    for channel, statuses in report.get("channels", {}).items():
        parts = []
        for status, entry in statuses.items():
            reasons = ", ".join(f"{r} {n:,}" for r, n in entry["reasons"].items())
            parts.append(f"{status} {entry['count']:,}" + (f" ({reasons})" if reasons else ""))
        lines.append(f"{channel}: {'; '.join(parts)}")
    for staff, counts in report.get("staff", {}).items():
        lines.append(f"staff {staff}: {_counts(counts)}")
    if "mass" in report:
        lines.append(f"mass send totals: {_counts(report['mass'])}")
    return lines
