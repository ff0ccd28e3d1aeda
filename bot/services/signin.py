"""Daily sign-in (签到): once per business-local day, a streak, and points for it.

Streak = yesterday's streak + 1 when the member signed in yesterday (business-local
dates), else 1; the base comes from ``[signin] rewards`` (the cycle restarts); the tier
and member-day multipliers apply per mille and the award rounds down (``points.award``).
The SignIn row's unique (member, day) decides duplicates. Concurrent sign-ins are
written together: one database statement per batch on PostgreSQL in the common case
(see ``storage.repos.signin``).

Activity: a sign-in through chat is already recorded by ``MemberService.resolve``, which
touches the member's ``last_active_at`` for every message and menu click (batched).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot.config import Settings
from bot.services import calendar, points
from bot.services.tiers import TierService
from storage.repos import signin as repo


@dataclass(frozen=True, slots=True)
class SignInResult:
    """One sign-in: ``signed`` False when the member had already signed in today.

    ``points`` is what this call earned (0 when already signed); ``base`` and the
    multipliers are today's rule for the member's streak and tier; ``tomorrow_points``
    is what signing in tomorrow would give at the current tier.
    """

    signed: bool
    day: date
    streak: int
    points: int
    base: int
    tier: str
    tier_multiplier: int
    day_multiplier: int
    balance: int
    tomorrow_points: int
    tomorrow_day_multiplier: int

    @property
    def member_day(self) -> bool:
        """True when today's member-day multiplier is above ×1."""
        return self.day_multiplier > points.PER_MILLE

    @property
    def tier_bonus(self) -> bool:
        """True when the member's tier multiplies sign-in points."""
        return self.tier_multiplier > points.PER_MILLE

    @property
    def tomorrow_member_day(self) -> bool:
        """True when tomorrow is a member day."""
        return self.tomorrow_day_multiplier > points.PER_MILLE


class SignInService:
    """Signs members in; the rules come from the settings."""

    def __init__(self, settings: Settings, tiers: TierService | None = None) -> None:
        self.settings = settings
        self.tiers = tiers
        self.rules = repo.Rules(
            rewards=settings.signin.rewards,
            tier_multipliers=tuple(
                (t.code, t.multiplier_per_mille) for t in settings.membership.tiers
            ),
            default_tier_multiplier=settings.membership.tier("").multiplier_per_mille,
        )

    def key(self, member_id: int, day: date) -> str:
        """The ledger idempotency key of a member's sign-in on a day."""
        return f"signin:{member_id}:{day.isoformat()}"

    def day_of(self, now: datetime) -> date:
        """The business-local date of a moment."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("datetimes must be timezone-aware")
        return now.astimezone(self.settings.tz).date()

    async def sign_in(self, member_id: int, now: datetime) -> SignInResult:
        """Sign the member in for today's business-local date (once; repeats award nothing)."""
        day = self.day_of(now)
        day_multiplier = calendar.day_multiplier(self.settings.member_day, day)
        attempt = repo.Attempt(
            member_id,
            day,
            now,
            self.key(member_id, day),
            day_multiplier,
            points.lot_expiry(now, self.settings.tz),
        )
        outcome = await repo.sign_in(attempt, self.rules)
        if outcome.signed:
            await self._grow(member_id, day, now)
        return self._result(day, day_multiplier, outcome)

    async def _grow(self, member_id: int, day: date, now: datetime) -> None:
        """Growth per sign-in (``[signin] growth``, off by default), keyed by the day.

        A separate transaction after the sign-in: a crash in between loses that day's
        growth, never doubles it (the key), and the tier rises as soon as it crosses.
        """
        growth = self.settings.signin.growth
        if growth <= 0 or self.tiers is None:
            return
        key = f"signin:{member_id}:{day.isoformat()}"
        await self.tiers.add_growth(member_id, growth, key, now=now, reason="签到", source="signin")

    def _result(self, day: date, day_multiplier: int, outcome: repo.Outcome) -> SignInResult:
        tier = self.rules.tier_multiplier(outcome.tier)
        tomorrow = calendar.day_multiplier(self.settings.member_day, day + timedelta(days=1))
        return SignInResult(
            signed=outcome.signed,
            day=day,
            streak=outcome.streak,
            points=outcome.points,
            base=self.rules.base_for(outcome.streak),
            tier=self.settings.membership.tier(outcome.tier).code,
            tier_multiplier=tier,
            day_multiplier=day_multiplier,
            balance=outcome.balance,
            tomorrow_points=points.award(self.rules.base_for(outcome.streak + 1), tier, tomorrow),
            tomorrow_day_multiplier=tomorrow,
        )
