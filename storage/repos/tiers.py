"""Growth entries, the member's cached growth and tier, and the yearly evaluation.

A growth write is one transaction: the keyed entry first (the unique key decides
duplicates), then ``growth = growth + amount`` as an UPDATE … RETURNING, which takes the
member's row lock (PostgreSQL) or the write lock (SQLite), so the growth the tier is
decided from is the one just written; the tier only ever rises here, conditionally on
the tier read under that lock. Thresholds are the caller's: ``decide`` maps (growth,
tier) to a higher tier or None.

The evaluation runs its per-tier UPDATEs in one transaction with the run's AuditLog
marker, so a run happens completely or not at all, and a second run finds the marker.
Times are bound in UTC (storage.timeutil).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from storage.models import AuditLog, GrowthEntry, Member
from storage.timeutil import utc

UPGRADE = "tier.upgrade"
DROP = "tier.drop"
EVALUATED = "tier.evaluate"


class UnknownMember(LookupError):
    """No member with this id."""


@dataclass(frozen=True, slots=True)
class GrowthSpec:
    """One keyed growth entry to write (``amount`` signed)."""

    member_id: int
    key: str
    amount: int
    now: datetime
    reason: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class Applied:
    """A written entry and the member's growth and tier after it."""

    entry_id: int
    growth: int
    tier: str
    previous_tier: str


@dataclass(frozen=True, slots=True)
class DropStep:
    """Members of ``tier`` whose 12-month growth is below ``retention`` go to ``lower``."""

    tier: str
    lower: str
    retention: int


def member_target(member_id: int) -> str:
    """The AuditLog target naming a member."""
    return f"member:{member_id}"


def _sql(conn: BaseDBAsyncClient, template: str) -> str:
    """Number the ``{}`` placeholders for asyncpg ($1, $2…) or make them ? for SQLite."""
    if conn.capabilities.dialect == "postgres":
        return template.format(*(f"${i}" for i in range(1, template.count("{}") + 1)))
    return template.replace("{}", "?")


_ADD = "UPDATE member SET growth = growth + {} WHERE id = {} RETURNING growth, tier"
_RAISE = "UPDATE member SET tier = {} WHERE id = {} AND tier = {}"


async def write_growth(spec: GrowthSpec, decide: Callable[[int, str], str | None]) -> Applied:
    """Insert the entry, add it to the member's growth, raise the tier if ``decide`` says."""
    async with in_transaction() as tx:
        entry = await GrowthEntry.create(
            member_id=spec.member_id,
            idempotency_key=spec.key,
            amount=spec.amount,
            reason=spec.reason[:128],
            source=spec.source[:32],
            created_at=spec.now,
        )
        rows = await tx.execute_query_dict(_sql(tx, _ADD), [spec.amount, spec.member_id])
        if not rows:
            raise UnknownMember(spec.member_id)
        growth, tier = int(rows[0]["growth"]), str(rows[0]["tier"])
        target = decide(growth, tier)
        if target is None or target == tier:
            return Applied(int(entry.id), growth, tier, tier)
        await tx.execute_query(_sql(tx, _RAISE), [target, spec.member_id, tier])
        await AuditLog.create(
            actor=spec.source[:64] or "growth",
            action=UPGRADE,
            target=member_target(spec.member_id),
            detail={"from": tier, "to": target, "growth": growth, "key": spec.key},
            at=spec.now,
        )
        return Applied(int(entry.id), growth, target, tier)


async def find_entry(key: str) -> tuple[int, int, int, datetime] | None:
    """(entry id, member id, amount, created_at) of the entry written under a key."""
    rows = await GrowthEntry.filter(idempotency_key=key).values_list(
        "id", "member_id", "amount", "created_at"
    )
    if not rows:
        return None
    entry_id, member_id, amount, created_at = rows[0]
    return int(entry_id), int(member_id), int(amount), created_at


async def member_state(member_id: int) -> tuple[int, str] | None:
    """A member's (growth, tier), or None if there is no such member."""
    rows = await Member.filter(id=member_id).values_list("growth", "tier")
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


async def upgrade_by(member_id: int, key: str, at: datetime) -> dict[str, Any] | None:
    """The upgrade a growth entry written at ``at`` caused (its AuditLog detail), if any."""
    # the upgrade row carries the entry's time: the indexed ``at`` finds it
    rows = await AuditLog.filter(
        action=UPGRADE, target=member_target(member_id), at=utc(at)
    ).values("detail")
    details: list[Any] = [row["detail"] for row in rows]
    return next((d for d in details if isinstance(d, dict) and d.get("key") == key), None)


async def evaluation_record(label: str) -> dict[str, Any] | None:
    """The summary stored by the evaluation run ``label``, if it ran."""
    rows = await AuditLog.filter(action=EVALUATED, target=label).values("detail")
    return dict(rows[0]["detail"]) if rows else None


# Growth earned in [start, end) below the retention; members who reached their tier at or
# after ``end`` (a late run) earned it after the evaluation date and are left alone.
_DROP = """
UPDATE member SET tier = {} WHERE status = 'active' AND tier = {} AND created_at < {}
AND COALESCE((SELECT SUM(g.amount) FROM growth_entry g WHERE g.member_id = member.id
              AND g.created_at >= {} AND g.created_at < {}), 0) < {}
AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.action = {} AND a.at >= {}
                AND a.target = 'member:' || member.id)
RETURNING id
"""


async def run_evaluation(
    label: str, steps: Sequence[DropStep], start: datetime, end: datetime, run_at: datetime
) -> dict[str, Any] | None:
    """Apply the drop steps in order, in one transaction with the run's marker.

    Steps run lowest tier first, so a member dropped from a higher tier is not judged
    again in the tier it lands in. Returns the stored summary (tier counts before and
    after, members dropped per tier), or None when the run ``label`` already happened.
    """
    async with in_transaction() as tx:
        await _serialise(tx)
        if await AuditLog.filter(action=EVALUATED, target=label).exists():
            return None
        before = await tier_counts()
        dropped: dict[str, list[int]] = {}
        for step in steps:
            values = [step.lower, step.tier, utc(end), utc(start), utc(end), step.retention]
            rows = await tx.execute_query_dict(_sql(tx, _DROP), [*values, UPGRADE, utc(end)])
            dropped[step.tier] = sorted(int(r["id"]) for r in rows)
        await _audit_drops(label, steps, dropped, run_at)
        summary = {
            "before": before,
            "after": await tier_counts(),
            "dropped": {tier: len(ids) for tier, ids in dropped.items()},
        }
        await AuditLog.create(
            actor="tiers", action=EVALUATED, target=label, detail=summary, at=run_at
        )
        return summary


async def _serialise(tx: BaseDBAsyncClient) -> None:
    # Two runs at once must not both pass the marker check. PostgreSQL: an advisory lock
    # held to the end of the transaction; SQLite already serialises writers (a second
    # writer that read before the first committed fails instead of writing).
    if tx.capabilities.dialect == "postgres":
        await tx.execute_query("SELECT pg_advisory_xact_lock(hashtext('tier.evaluate'))")


async def _audit_drops(
    label: str, steps: Sequence[DropStep], dropped: dict[str, list[int]], run_at: datetime
) -> None:
    lower = {step.tier: step.lower for step in steps}
    rows = [
        AuditLog(
            actor=label,
            action=DROP,
            target=member_target(member_id),
            detail={"from": tier, "to": lower[tier]},
            at=run_at,
        )
        for tier, ids in dropped.items()
        for member_id in ids
    ]
    if rows:
        await AuditLog.bulk_create(rows, batch_size=500)


async def drops_of(label: str) -> list[tuple[int, str, str]]:
    """(member id, from tier, to tier) of every member the run ``label`` dropped."""
    rows = await AuditLog.filter(actor=label, action=DROP).values_list("target", "detail")
    return [
        (int(target.removeprefix("member:")), str(detail["from"]), str(detail["to"]))
        for target, detail in rows
    ]


async def tier_counts() -> dict[str, int]:
    """Active members per tier."""
    rows = (
        await Member.filter(status="active")
        .annotate(n=Count("id"))
        .group_by("tier")
        .values("tier", "n")
    )
    return {str(r["tier"]): int(r["n"]) for r in rows}
