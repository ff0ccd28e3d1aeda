"""``python -m bot sop list|preview|run|history``: look at and run the SOPs.

``preview`` and ``run --dry-run`` claim and send nothing; ``run`` records the fire time
(trigger ``cli``), claims the touches and writes their messages to the outbox, which the
server's sender delivers (CLI commands never send themselves).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections import Counter
from datetime import datetime

from apscheduler.triggers.cron import CronTrigger
from tortoise.expressions import Subquery
from tortoise.functions import Count

from bot.app import build_services
from bot.cli_tiers import parse_at
from bot.config import Settings
from bot.config_sop import SopRule
from bot.progress import ProgressBar
from sop import runs
from sop.engine import Preview, SopEngine, UnknownSop
from storage.models import OutboxMessage, SopRun, Touchpoint


def _engine(settings: Settings) -> SopEngine:
    return SopEngine(build_services(settings))


def _rule_or_fail(engine: SopEngine, sop_id: str) -> SopRule:
    from bot.cli import CliError

    try:
        return engine.rule(sop_id)
    except UnknownSop as exc:
        raise CliError(str(exc)) from None


def describe_trigger(rule: SopRule) -> str:
    """``cron 0 9 * * *`` or ``first_subscribe +1d,+3d``."""
    if rule.trigger.cron:
        return f"cron {rule.trigger.cron}"
    delays = ",".join(f"+{d}" for d in rule.trigger.delays)
    return f"{rule.trigger.event} {delays}".strip()


def describe_action(rule: SopRule) -> str:
    """``sop_birthday.j2 + 200 points + coupon C10``."""
    action = rule.action
    parts = [f"{action.template}.j2"] if action.template else []
    if action.points:
        parts.append(f"{action.points} points")
    if action.coupon:
        parts.append(f"coupon {action.coupon}")
    if action.tag:
        parts.append(f"tag {action.tag}")
    return " + ".join(parts)


async def list_sop(settings: Settings, args: argparse.Namespace) -> int:
    """Every SOP: trigger, audience, action, window, last and next fire time."""
    engine = _engine(settings)
    try:
        if not engine.rules:
            print("no SOPs configured ([[sop.rules]])")
            return 0
        now = engine.services.clock.now()
        for rule in sorted(engine.rules.values(), key=lambda r: (r.priority, r.id)):
            print(await _list_line(rule, now, settings))
    finally:
        await engine.services.cache.close()
    return 0


async def _list_line(rule: SopRule, now: datetime, settings: Settings) -> str:
    state = "on " if rule.enabled else "off"
    params = " ".join(f"{k}={v}" for k, v in rule.audience.params.items())
    audience = f"{rule.audience.name} {params}".strip()
    last = await SopRun.filter(sop_id=rule.id).order_by("-fire_time").first()
    when = ""
    if last is not None:
        when = f"; last {_local(last.fire_time, settings)} {last.status}"
    if rule.enabled and rule.trigger.cron:
        trigger = CronTrigger.from_crontab(rule.trigger.cron, timezone=settings.tz)
        upcoming = trigger.get_next_fire_time(None, now)
        if upcoming is not None:
            when += f"; next {_local(upcoming, settings)}"
    return (
        f"{state} {rule.id:<16} {rule.kind:<9} p{rule.priority:<4} {describe_trigger(rule)} → "
        f"{audience} → {describe_action(rule)} (once per {rule.once_per}){when}"
    )


def _local(moment: datetime, settings: Settings) -> str:
    return moment.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")


async def preview_sop(settings: Settings, args: argparse.Namespace) -> int:
    """Audience size, channel split and a rendered sample; claims and sends nothing."""
    engine = _engine(settings)
    try:
        rule = _rule_or_fail(engine, args.id)
        at = parse_at(args.at, settings) or engine.services.clock.now()
        print(_describe_preview(await engine.preview(rule.id, at), settings))
        sample = await engine.sample_text(rule, at)
        if sample:
            print("sample message:")
            print("  " + sample.replace("\n", "\n  "))
    finally:
        await engine.services.cache.close()
    return 0


def _describe_preview(preview: Preview, settings: Settings) -> str:
    rule = preview.rule
    channels = ", ".join(f"{k} {v:,}" for k, v in preview.channels.items()) or "none"
    ran = "; this fire time already ran" if preview.already_run else ""
    return (
        f"SOP {rule.id} ({rule.kind}) at {_local(preview.fire_time, settings)}: "
        f"{preview.selected:,} members selected{ran}\n"
        f"channels now: {channels}\n"
        f"action: {describe_action(rule)} (once per {rule.once_per})"
    )


async def run_sop(settings: Settings, args: argparse.Namespace) -> int:
    """Run one fire time now (--at: which fire time); --dry-run: preview only."""
    engine = _engine(settings)
    try:
        rule = _rule_or_fail(engine, args.id)
        at = parse_at(args.at, settings) or engine.services.clock.now()
        preview = await engine.preview(rule.id, at)
        if args.dry_run:
            print(_describe_preview(preview, settings))
            print("dry run: nothing claimed, nothing sent")
            return 0
        bar = ProgressBar(sys.stderr, {"claimed": preview.selected, "sent": preview.selected})
        runner = f"cli:{socket.gethostname()}:{os.getpid()}"
        run = await engine.fire(rule.id, at, runner=runner, progress=bar.update, trigger=runs.CLI)
        bar.close()
    finally:
        await engine.services.cache.close()
    if run is None:
        existing = await runs.get(rule.id, at)
        status = existing.status if existing is not None else "recorded"
        print(f"SOP {rule.id} at {_local(at, settings)} already {status}: nothing done")
        return 0
    print(f"SOP {rule.id} at {_local(at, settings)}: {_counts(run.counts)}")
    print("messages are in the outbox; the server's sender delivers them")
    return 0


def _counts(counts: dict[str, object]) -> str:
    head = [f"{k} {counts[k]}" for k in ("selected", "claimed") if k in counts]
    rest = [f"{k} {v}" for k, v in sorted(counts.items()) if k not in ("selected", "claimed")]
    return ", ".join(head + rest) or "nothing"


async def history_sop(settings: Settings, args: argparse.Namespace) -> int:
    """Per fire time: the run, its touches and how their messages ended, with reasons."""
    engine = _engine(settings)
    try:
        rule = _rule_or_fail(engine, args.id)
        found = await runs.history(rule.id, args.limit)
        if not found:
            print(f"SOP {rule.id} has not run yet")
        for run in found:
            print(await _history_block(run, settings))
    finally:
        await engine.services.cache.close()
    return 0


async def _history_block(run: SopRun, settings: Settings) -> str:
    head = f"{_local(run.fire_time, settings)}  {run.status} ({run.trigger})"
    if run.note:
        head += f": {run.note}"
    lines = [head]
    if run.status == runs.MISSED:
        return head
    counts = run.counts or {}
    lines.append(f"    selected {counts.get('selected', 0)}, claimed {counts.get('claimed', 0)}")
    touches = await _touch_outcomes(int(run.id))
    if touches:
        lines.append("    touches: " + ", ".join(f"{k} {n}" for k, n in touches.most_common()))
    messages = await _message_outcomes(int(run.id))
    if messages:
        lines.append("    messages: " + ", ".join(f"{k} {n}" for k, n in messages.most_common()))
    return "\n".join(lines)


async def _touch_outcomes(run_id: int) -> Counter[str]:
    rows = (
        await Touchpoint.filter(run_id=run_id)
        .annotate(n=Count("id"))
        .group_by("status", "outcome")
        .values("status", "outcome", "n")
    )
    found: Counter[str] = Counter()
    for row in rows:
        label = row["status"] if not row["outcome"] else f"{row['status']}: {row['outcome']}"
        found[label] += int(row["n"])
    return found


async def _message_outcomes(run_id: int) -> Counter[str]:
    ids = Touchpoint.filter(run_id=run_id, outbox_id__isnull=False).values("outbox_id")
    rows = (
        await OutboxMessage.filter(id__in=Subquery(ids))
        .annotate(n=Count("id"))
        .group_by("status", "reason")
        .values("status", "reason", "n")
    )
    found: Counter[str] = Counter()
    for row in rows:
        label = row["status"] if not row["reason"] else f"{row['status']} ({row['reason']})"
        found[label] += int(row["n"])
    return found
