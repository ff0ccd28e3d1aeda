"""AuditLog rows: who changed what (DESIGN §9), and the latest row of an action."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from storage.models import AuditLog
from storage.timeutil import utc

__all__ = ["atomic", "latest", "record"]


def atomic() -> Any:
    """A transaction (a savepoint inside one) so a change and its audit row commit together."""
    return in_transaction()


async def record(actor: str, action: str, target: str, detail: dict[str, Any], at: datetime) -> int:
    """Append one audit row; its id."""
    row = await AuditLog.create(
        actor=actor, action=action, target=target, detail=detail, at=utc(at)
    )
    return int(row.id)


async def latest(action: str) -> dict[str, Any] | None:
    """The newest row of an action (detail and time), or None."""
    rows = (
        await AuditLog.filter(action=action)
        .order_by("-id")
        .limit(1)
        .values("detail", "at", "actor")
    )
    return dict(rows[0]) if rows else None
