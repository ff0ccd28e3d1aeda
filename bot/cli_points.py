"""``python -m bot points expire|reconcile``: expiry runs and the ledger's books."""

from __future__ import annotations

import argparse
from datetime import datetime, time

from bot.clock import BusinessClock
from bot.config import Settings
from bot.services import points_report


def parse_at(text: str, settings: Settings) -> datetime:
    """An ISO date or datetime; without an offset it is business time."""
    from bot.cli import CliError

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--at {text!r} is not an ISO date or datetime") from None
    if len(text) <= len("YYYY-MM-DD"):
        moment = datetime.combine(moment.date(), time())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=settings.tz)


def _now(settings: Settings) -> datetime:
    return BusinessClock(settings.tz).now()


async def expire_points(settings: Settings, args: argparse.Namespace) -> int:
    """Write expiry entries for every lot due at --at (default now)."""
    now = _now(settings)
    due = parse_at(args.at, settings) if args.at else now
    run = await points_report.expire(due, actor=args.actor, now=now)
    print(
        f"expired {run.points} points in {run.entries} entries "
        f"(lots due by {due.isoformat(timespec='seconds')})"
    )
    return 0


async def reconcile_points(settings: Settings, args: argparse.Namespace) -> int:
    """Check every member against the ledger, record the result; exit 1 on breaks."""
    report = await points_report.reconcile(_now(settings), settings.tz, args.actor)
    for b in report.breaks:
        print(
            f"break member {b.member_id}: balance {b.balance} debt {b.debt} "
            f"open lots {b.open_lots} entries {b.entries} bad lots {b.bad_lots}"
        )
    print(f"{len(report.breaks)} breaks")
    value = settings.points.points_per_yuan_value
    print(f"outstanding {report.outstanding} points (liability ¥{report.outstanding / value:,.2f})")
    print(
        f"expiring in {report.next_month_start:%Y-%m}: {report.next_month_expiry} points "
        f"(¥{report.next_month_expiry / value:,.2f})"
    )
    return 1 if report.breaks else 0
