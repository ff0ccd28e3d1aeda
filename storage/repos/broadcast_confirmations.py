"""One-time confirmation codes of chat broadcasts (群发 → 确认) and their progress marks.

A code is taken by one conditional update (``status = 'pending' AND expires_at > now``)
with its AuditLog row in the same transaction: of two confirmations racing for one code,
whatever process each reaches, exactly one changes the row. The progress mark moves the
same way (from the mark read to the next), so a progress message is recorded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.models import BroadcastConfirmation
from storage.repos import audit_log
from storage.timeutil import utc

PENDING, USED = "pending", "used"
FINAL = "final"


@dataclass(frozen=True, slots=True)
class Taken:
    """The outcome of a take: ``taken``, ``used``, ``expired`` or ``wrong``."""

    outcome: str
    broadcast_id: int = 0


async def issue(
    broadcast_id: int, staff: str, code_hash: str, now: datetime, ttl: timedelta
) -> BroadcastConfirmation:
    """A pending code for the broadcast, valid for ``ttl``, audited."""
    async with audit_log.atomic():
        row = await BroadcastConfirmation.create(
            broadcast_id=broadcast_id,
            staff_userid=staff,
            code_hash=code_hash,
            expires_at=utc(now + ttl),
            created_at=utc(now),
        )
        detail = {"expires_at": (now + ttl).isoformat()}
        target = f"broadcast:{broadcast_id}"
        await audit_log.record(f"staff:{staff}", "broadcast.code", target, detail, now)
    return row


async def live(staff: str, code_hash: str, now: datetime) -> bool:
    """Whether this staff member holds a pending, unexpired code with this digest."""
    return await BroadcastConfirmation.filter(
        staff_userid=staff, code_hash=code_hash, status=PENDING, expires_at__gt=utc(now)
    ).exists()


async def take(staff: str, code_hash: str, now: datetime) -> Taken:
    """Use the staff member's code: ``taken`` once; then ``used``; ``expired``; ``wrong``."""
    row = await _latest(staff, code_hash)
    if row is None:
        return Taken("wrong")
    async with audit_log.atomic():
        changed = await BroadcastConfirmation.filter(
            id=row.id, status=PENDING, expires_at__gt=utc(now)
        ).update(status=USED, used_at=utc(now))
        if changed == 1:
            target = f"broadcast:{row.broadcast_id}"
            await audit_log.record(f"staff:{staff}", "broadcast.confirm", target, {}, now)
            return Taken("taken", int(row.broadcast_id))
    row = await BroadcastConfirmation.get(id=row.id)
    return Taken(USED if row.status == USED else "expired", int(row.broadcast_id))


async def _latest(staff: str, code_hash: str) -> BroadcastConfirmation | None:
    return (
        await BroadcastConfirmation.filter(staff_userid=staff, code_hash=code_hash)
        .order_by("-id")
        .first()
    )


async def watching() -> list[BroadcastConfirmation]:
    """Used codes whose broadcast has not had its final report yet, oldest first."""
    return await BroadcastConfirmation.filter(status=USED).exclude(progress=FINAL).order_by("id")


async def mark(confirmation_id: int, seen: str, stage: str) -> bool:
    """Progress ``seen`` → ``stage``; False when another tick moved it first."""
    changed = await BroadcastConfirmation.filter(id=confirmation_id, progress=seen).update(
        progress=stage
    )
    return changed == 1


async def latest_of(staff: str) -> BroadcastConfirmation | None:
    """The staff member's most recent chat broadcast code (used or not)."""
    return await BroadcastConfirmation.filter(staff_userid=staff).order_by("-id").first()
