"""Operator changes to members, each committed together with its AuditLog row."""

from __future__ import annotations

import secrets
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.services import points
from storage.repos import audit_log

ADJUST_ACTION = "points.adjust"


def new_key() -> str:
    """A fresh idempotency key for a manual correction (print it: rerun with --key)."""
    return f"adjust:{secrets.token_hex(8)}"


async def adjust_points(
    member_id: int,
    delta: int,
    *,
    reason: str,
    actor: str,
    key: str,
    now: datetime,
    tz: ZoneInfo,
) -> points.LedgerResult:
    """Correct a member's points (negative beyond the balance becomes debt), audited.

    The ledger write runs inside the audit transaction (a savepoint), so either both the
    entry and its audit row commit or neither; a repeated key writes neither again.
    """
    if not reason.strip():
        raise ValueError("a reason is required")
    async with audit_log.atomic():
        result = await points.adjust(
            member_id,
            delta,
            key,
            now=now,
            expires_at=points.lot_expiry(now, tz),
            reason=reason.strip(),
            actor=actor,
        )
        if not result.duplicate:
            detail = {
                "delta": delta,
                "reason": reason.strip(),
                "key": key,
                "entry_id": result.entry_id,
                "balance": result.balance,
                "debt": result.debt,
            }
            await audit_log.record(actor, ADJUST_ACTION, f"member:{member_id}", detail, now)
    return result
