"""ONE-ID merge and undo (DESIGN §3): the one entry point phone binding and staff use.

``merge_members`` moves everything a member owns to the survivor in one transaction
(``storage.repos.merge`` walks ``storage.member_data``, so a new movable model moves
without edits here), then clears the identity → member cache for every moved identity,
after the commit and before returning. ``unmerge`` moves exactly the recorded rows back.

Member fields on a merge: balances, debts and growth add up (a debt is not settled from
the other's balance: the next earning settles it, as always); the tier only rises; the
mobile, birthday and referrer fill the survivor's blanks; ``last_active_at`` is the later
one; an opt-out of either member holds for the survivor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.config_program import MembershipSettings
from storage.repos import merge as repo
from storage.repos.merge import MergeRefused

if TYPE_CHECKING:
    from bot.context import Services

__all__ = ["MergeRefused", "MergeResult", "UndoResult", "merge_members", "unmerge"]


@dataclass(frozen=True, slots=True)
class MergeResult:
    """A committed merge: its MemberMerge id and rows moved and kept per model."""

    merge_id: int
    survivor_id: int
    merged_id: int
    moved: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UndoResult:
    """A committed undo: rows moved back per model and points given back to the lots."""

    merge_id: int
    survivor_id: int
    merged_id: int
    moved: dict[str, int] = field(default_factory=dict)
    reallocated: int = 0


async def merge_members(
    survivor_id: int,
    merged_id: int,
    *,
    actor: str,
    reason: str,
    now: datetime,
    services: Services,
) -> MergeResult:
    """Merge ``merged_id`` into ``survivor_id``; MergeRefused (nothing moved) with a reason."""
    _aware(now)
    membership = services.settings.membership

    def tier_rule(survivor_tier: str, merged_tier: str, growth: int) -> str:
        return _highest(membership, survivor_tier, merged_tier, growth)

    outcome = await repo.merge(
        survivor_id, merged_id, actor=actor, reason=reason, now=now, tier_rule=tier_rule
    )
    await _forget(services, outcome.identities)
    return MergeResult(outcome.merge_id, survivor_id, merged_id, outcome.moved, outcome.kept)


async def unmerge(merge_id: int, *, actor: str, now: datetime, services: Services) -> UndoResult:
    """Undo merge ``merge_id`` exactly; MergeRefused (nothing changed) with a reason."""
    _aware(now)
    membership = services.settings.membership

    def tier_rule(tier: str, growth: int) -> str:
        return _highest(membership, tier, tier, growth)

    outcome = await repo.undo(merge_id, actor=actor, now=now, tier_rule=tier_rule)
    await _forget(services, outcome.identities)
    return UndoResult(
        merge_id, outcome.survivor_id, outcome.merged_id, outcome.moved, outcome.reallocated
    )


def _highest(membership: MembershipSettings, first: str, second: str, growth: int) -> str:
    """The highest of two tiers and the tier ``growth`` reaches (a merge never lowers)."""
    codes = [tier.code for tier in membership.tiers]

    def rank(code: str) -> int:
        return codes.index(code) if code in codes else 0

    reached = membership.tier_for_growth(growth).code
    return max((first, second, reached), key=rank)


async def _forget(services: Services, identities: list[tuple[str, str, str]]) -> None:
    for kind, app, value in identities:
        await services.cache.delete(services.keys.identity(kind, app, value))


def _aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
