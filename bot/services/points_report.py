"""Operator views of the ledger: expiry runs, recorded reconciliations, the liability."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from bot.services import points
from storage.repos import audit_log, member_view

RECONCILE_ACTION = "points.reconcile"
EXPIRE_ACTION = "points.expire"
LISTED = 50  # member ids kept in the audit row


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    """What one expiry pass wrote."""

    entries: int
    points: int


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """The breaks found, the liability, and what expires next calendar month."""

    breaks: tuple[points.Break, ...]
    outstanding: int
    next_month_start: date
    next_month_expiry: int


async def expire(due: datetime, *, actor: str, now: datetime) -> ExpiryRun:
    """Expire every lot due at ``due``; what this pass wrote, recorded in the AuditLog."""
    watermark = await member_view.last_entry_id()
    await points.expire_due(due)
    entries, amount = await member_view.expired_since(watermark)
    detail = {"due": due.isoformat(), "entries": entries, "points": amount}
    await audit_log.record(actor, EXPIRE_ACTION, "points", detail, now)
    return ExpiryRun(entries, amount)


def next_month(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[first of next month, first of the month after) in business time."""
    local = now.astimezone(tz).date()
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    after = (year + 1, 1) if month == 12 else (year, month + 1)
    start = datetime.combine(date(year, month, 1), time(), tz)
    return start, datetime.combine(date(after[0], after[1], 1), time(), tz)


async def reconcile(now: datetime, tz: ZoneInfo, actor: str) -> ReconcileReport:
    """Check every member's totals against the ledger and record the result (AuditLog)."""
    breaks = tuple(await points.reconcile())
    start, end = next_month(now, tz)
    report = ReconcileReport(
        breaks, await points.outstanding(), start.date(), await points.expiring_between(start, end)
    )
    detail = {
        "breaks": len(breaks),
        "members": [b.member_id for b in breaks[:LISTED]],
        "outstanding": report.outstanding,
        "next_month_expiry": report.next_month_expiry,
    }
    await audit_log.record(actor, RECONCILE_ACTION, "points", detail, now)
    return report


async def latest_breaks() -> int | None:
    """The breaks count of the latest recorded reconciliation (None: never run)."""
    row = await audit_log.latest(RECONCILE_ACTION)
    return None if row is None else int(row["detail"].get("breaks", 0))
