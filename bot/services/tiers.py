"""Growth and tiers (DESIGN §4): upgrade on crossing a threshold, yearly evaluation.

Growth is never spent and never reset. ``add_growth`` raises the tier at once when the
member's growth reaches a higher threshold (never lowers it); a refund's
``reverse_growth`` lowers growth but not the tier, which only the yearly evaluation
lowers: a member keeps a tier when the growth earned in the 12 months before the
evaluation day reaches its retention threshold, else drops one tier.

Tier notices go out after the commit through the notify service, keyed so a retry (or a
second run) never sends one twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from tortoise.exceptions import IntegrityError

from bot.clock import BusinessClock
from bot.config import Settings
from bot.config_program import MembershipSettings, TierSettings
from bot.services.calendar import next_evaluation
from bot.services.events import TIER_CHANGE, EventHub
from bot.services.notify import Notifier
from storage.repos import tiers as repo
from storage.repos.tiers import UnknownMember

__all__ = [
    "EvaluationSummary",
    "GrowthResult",
    "KeyReused",
    "TierService",
    "UnknownMember",
    "last_evaluation",
]

log = logging.getLogger("bot.tiers")
MAX_KEY = 191  # GrowthEntry.idempotency_key


class KeyReused(ValueError):
    """An idempotency key already names another growth entry (member or amount)."""


@dataclass(frozen=True, slots=True)
class GrowthResult:
    """The entry written (or found, when ``duplicate``), growth and tier after it."""

    entry_id: int
    amount: int
    growth: int
    tier: str
    previous_tier: str
    duplicate: bool = False

    @property
    def upgraded(self) -> bool:
        """True when this entry raised the tier."""
        return self.tier != self.previous_tier


@dataclass(frozen=True, slots=True)
class EvaluationSummary:
    """One yearly evaluation: kept and dropped members, members per tier after it."""

    evaluation_date: date
    kept: int
    dropped: int
    dropped_from: dict[str, int] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)
    already_done: bool = False


class TierService:
    """Growth entries, upgrades, the yearly evaluation and tier notices."""

    def __init__(
        self,
        settings: Settings,
        clock: BusinessClock,
        notifier: Notifier,
        events: EventHub | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier
        self.events = events

    @property
    def membership(self) -> MembershipSettings:
        """The tier settings."""
        return self.settings.membership

    async def add_growth(
        self, member_id: int, amount: int, key: str, *, now: datetime, reason: str, source: str
    ) -> GrowthResult:
        """Add growth once per key; raise the tier at once when a threshold is crossed."""
        if amount <= 0:
            raise ValueError(f"amount must be positive, got {amount}")
        result = await self._write(repo.GrowthSpec(member_id, key, amount, now, reason, source))
        if result.upgraded:
            await self._notice(member_id, result.previous_tier, result.tier, f"up:{key}")
            if not result.duplicate:  # a retried order must not trigger its SOPs again
                await self._emit(member_id)
        return result

    async def reverse_growth(
        self, member_id: int, amount: int, key: str, *, now: datetime, reason: str, source: str
    ) -> GrowthResult:
        """Take growth back (a refund); the tier stays until the yearly evaluation."""
        if amount <= 0:
            raise ValueError(f"amount must be positive, got {amount}")
        return await self._write(repo.GrowthSpec(member_id, key, -amount, now, reason, source))

    async def _write(self, spec: repo.GrowthSpec) -> GrowthResult:
        _check(spec.key, spec.now)
        decide = self._raise if spec.amount > 0 else _never
        try:
            applied = await repo.write_growth(spec, decide)
        except IntegrityError as error:
            return await self._duplicate(spec, error)
        return GrowthResult(
            applied.entry_id, spec.amount, applied.growth, applied.tier, applied.previous_tier
        )

    def _raise(self, growth: int, tier: str) -> str | None:
        """The higher tier that ``growth`` reaches, or None (never lower)."""
        reached = self.membership.tier_for_growth(growth)
        return (
            reached.code
            if _rank(self.membership, reached.code) > _rank(self.membership, tier)
            else None
        )

    async def _duplicate(self, spec: repo.GrowthSpec, error: Exception) -> GrowthResult:
        """The first entry under the key; its upgrade notice enqueued again (idempotent)."""
        entry = await repo.find_entry(spec.key)
        if entry is None:
            if await repo.member_state(spec.member_id) is None:
                raise UnknownMember(spec.member_id) from error
            raise error
        entry_id, member_id, amount, created_at = entry
        if (member_id, amount) != (spec.member_id, spec.amount):
            raise KeyReused(f"{spec.key!r} is growth {amount} for member {member_id}")
        state = await repo.member_state(member_id)
        growth, tier = state if state is not None else (0, "")
        upgrade = await repo.upgrade_by(member_id, spec.key, created_at) if amount > 0 else None
        if upgrade is None:
            return GrowthResult(entry_id, amount, growth, tier, tier, duplicate=True)
        # the first call may have died between its commit and its notice
        await self._notice(member_id, str(upgrade["from"]), str(upgrade["to"]), f"up:{spec.key}")
        return GrowthResult(
            entry_id, amount, int(upgrade["growth"]), str(upgrade["to"]), str(upgrade["from"]), True
        )

    async def evaluate(self, at: datetime) -> EvaluationSummary:
        """Apply the latest yearly evaluation on or before ``at`` (once per evaluation day)."""
        _check("evaluate", at)
        day = last_evaluation(self.membership, at.astimezone(self.settings.tz).date())
        label = f"evaluation:{day.isoformat()}"
        end = datetime.combine(day, datetime.min.time(), self.settings.tz)
        start = datetime.combine(_year_before(day), datetime.min.time(), self.settings.tz)
        summary = await repo.run_evaluation(label, self._steps(), start, end, self.clock.now())
        already = summary is None
        if summary is None:
            summary = await repo.evaluation_record(label) or {}
        for member_id, old, new in await repo.drops_of(label):
            await self._notice(member_id, old, new, f"eval:{day.isoformat()}")
            if not already:  # only the call that ran the evaluation reports the change
                await self._emit(member_id)
        return self._summary(day, summary, already)

    def _steps(self) -> list[repo.DropStep]:
        tiers = self.membership.tiers
        return [
            repo.DropStep(tiers[i].code, tiers[i - 1].code, tiers[i].retention)
            for i in range(1, len(tiers))
        ]

    def _summary(self, day: date, stored: dict[str, Any], already: bool) -> EvaluationSummary:
        before: dict[str, int] = stored.get("before", {})
        dropped: dict[str, int] = stored.get("dropped", {})
        lowest = self.membership.tiers[0].code
        evaluated = sum(n for code, n in before.items() if code != lowest)
        total = sum(dropped.values())
        return EvaluationSummary(
            day, evaluated - total, total, dict(dropped), dict(stored.get("after", {})), already
        )

    async def _notice(self, member_id: int, old: str, new: str, key: str) -> None:
        """The tier-changed service notice (after the commit; a failure is logged)."""
        variables = self.notice_variables(old, new)
        try:
            await self.notifier.notify(
                member_id, "tier_changed", variables, key=f"tier:{member_id}:{key}"
            )
        except Exception:
            log.exception("tier notice failed", extra={"member_id": member_id})

    async def _emit(self, member_id: int) -> None:
        """The ``tier_change`` event (subscriber errors are logged by the hub)."""
        if self.events is not None:
            await self.events.emit(TIER_CHANGE, member_id, self.clock.now())

    def notice_variables(self, old: str, new: str) -> dict[str, Any]:
        """Variables of templates/tier_changed.j2."""
        before, after = self.membership.tier(old), self.membership.tier(new)
        today = self.clock.now().astimezone(self.settings.tz).date()
        return {
            "tier": after.name,
            "previous": before.name,
            "upgraded": after.threshold > before.threshold,
            "benefits": list(after.benefits),
            "next_evaluation": next_evaluation(self.membership, today).isoformat(),
        }

    def standing(self, growth: int, tier_code: str, today: date) -> dict[str, Any]:
        """Variables of templates/tier.j2 for a member's growth and tier."""
        tier = self.membership.tier(tier_code)
        above: TierSettings | None = self.membership.next_tier(tier.code)
        return {
            "tier": tier.name,
            "growth": growth,
            "next_tier": above.name if above else "",
            "to_next": max(above.threshold - growth, 0) if above else 0,
            "benefits": list(tier.benefits),
            "next_evaluation": next_evaluation(self.membership, today).isoformat(),
        }


def _never(growth: int, tier: str) -> str | None:
    return None


def _rank(membership: MembershipSettings, code: str) -> int:
    return next((i for i, t in enumerate(membership.tiers) if t.code == code), 0)


def last_evaluation(membership: MembershipSettings, today: date) -> date:
    """The latest yearly evaluation day on or before ``today``."""
    return _year_before(next_evaluation(membership, today))


def _year_before(day: date) -> date:
    return day.replace(year=day.year - 1)  # 29 February is not a valid evaluation day


def _check(key: str, now: datetime) -> None:
    if not key or len(key) > MAX_KEY:
        raise ValueError(f"idempotency key must be 1 to {MAX_KEY} characters")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
