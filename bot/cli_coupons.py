"""``python -m bot coupons expire``: mark issued coupons past their validity expired."""

from __future__ import annotations

import argparse

from bot.cli_points import parse_at
from bot.clock import BusinessClock
from bot.config import Settings
from storage.repos import audit_log, coupons

EXPIRE_ACTION = "coupons.expire"


async def expire_coupons(settings: Settings, args: argparse.Namespace) -> int:
    """One set-based update (idempotent: a second run finds nothing), recorded in the audit log."""
    now = BusinessClock(settings.tz).now()
    due = parse_at(args.at, settings) if args.at else now
    async with audit_log.atomic():
        count = await coupons.expire_due(due)
        detail = {"due": due.isoformat(), "coupons": count}
        await audit_log.record(args.actor, EXPIRE_ACTION, "coupons", detail, now)
    print(f"expired {count} coupons (valid_to by {due.isoformat(timespec='seconds')})")
    return 0
