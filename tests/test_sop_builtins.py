"""Each built-in SOP (as config.example.toml ships it) selects exactly the right members
at its fire time (a UTC clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bot.config import Settings, load_settings
from bot.config_sop import SopRule
from sop.audiences import check_audience
from storage.models import GrowthEntry
from tests.audience_support import SH, audience, lot, member, occurrences, selected, signed

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
BUILTIN_RULES = load_settings(EXAMPLE, env={}).sop.rules


def builtin(sop_id: str) -> SopRule:
    """The built-in SOP of that id, as the example settings define it."""
    return next(r for r in BUILTIN_RULES if r.id == sop_id)


def test_builtins_are_valid_and_match_the_issue() -> None:
    for rule in BUILTIN_RULES:
        check_audience(rule)
    kinds = {r.id: (r.kind, r.trigger.cron or r.trigger.event, r.once_per) for r in BUILTIN_RULES}
    assert kinds == {
        "signin_streak": ("marketing", "0 20 * * *", "day"),
        "birthday": ("service", "0 9 * * *", "year"),
        "member_day": ("marketing", "0 10 * * *", "month"),
        "reactivation": ("marketing", "0 11 * * *", "ever"),
        "welcome_series": ("marketing", "first_subscribe", "ever"),
        "points_expiry": ("service", "0 10 * * *", "ever"),
        "tier_warning": ("service", "0 10 * * *", "year"),
    }
    assert builtin("birthday").action.points > 0
    assert builtin("welcome_series").trigger.delays == ("1d", "3d", "7d")


async def claimed(settings: Settings, rule: SopRule, at: datetime) -> dict[int, str]:
    """Claim the audience at ``at``; member → occurrence of the rule's touchpoints."""
    await audience(settings, rule, at).claim(run_id=None, due_at=at, now=at)
    return await occurrences(rule.id)


async def test_signin_streak_at_20_00(settings: Settings) -> None:
    lapsing = await member()
    await signed(lapsing, date(2027, 5, 19))
    done = await member()
    await signed(done, date(2027, 5, 19), date(2027, 5, 20))
    opted_out = await member(marketing_opt_out=True)
    await signed(opted_out, date(2027, 5, 19))
    fire = datetime(2027, 5, 20, 12, tzinfo=UTC)  # 20:00 in Shanghai
    assert await claimed(settings, builtin("signin_streak"), fire) == {lapsing: "2027-05-20"}


async def test_birthday_at_09_00_yearly_for_service(settings: Settings) -> None:
    leap = await member(birthday=date(2004, 2, 29))
    opted_out = await member(birthday=date(1999, 2, 28), marketing_opt_out=True)
    await member(birthday=date(1999, 3, 1), status="merged")
    rule = builtin("birthday")
    fire = datetime(2027, 2, 28, 1, tzinfo=UTC)
    assert await claimed(settings, rule, fire) == {leap: "2027", opted_out: "2027"}
    # a second fire the same year touches nobody again
    assert await audience(settings, rule, fire).claim(run_id=None, due_at=fire, now=fire) == 0


async def test_member_day_daily_trigger_with_a_date_check(settings: Settings) -> None:
    active = await member(last_active_at=datetime(2027, 5, 1, tzinfo=SH))
    await member(last_active_at=datetime(2027, 1, 1, tzinfo=SH))
    rule = builtin("member_day")
    for day in range(1, 32):
        fire = datetime(2027, 5, day, 2, tzinfo=UTC)  # 10:00 in Shanghai
        assert await selected(settings, rule, fire) == ([active] if day == 8 else []), day
    fire = datetime(2027, 5, 8, 2, tzinfo=UTC)
    assert await claimed(settings, rule, fire) == {active: "2027-05"}


async def test_reactivation_30_and_60(settings: Settings) -> None:
    thirty = await member(last_active_at=datetime(2027, 4, 20, 12, tzinfo=SH))
    sixty = await member(last_active_at=datetime(2027, 3, 21, 12, tzinfo=SH))
    await member(last_active_at=datetime(2027, 5, 1, tzinfo=SH))
    fire = datetime(2027, 5, 20, 2, tzinfo=UTC)
    assert await claimed(settings, builtin("reactivation"), fire) == {
        thirty: "reactivation:2027-04-20:30",
        sixty: "reactivation:2027-03-21:60",
    }


async def test_welcome_series_member_check(settings: Settings) -> None:
    newcomer = await member(created_at=datetime(2027, 5, 19, tzinfo=SH))
    opted_out = await member(marketing_opt_out=True)
    crowd = audience(settings, builtin("welcome_series"), datetime(2027, 5, 20, 9, tzinfo=SH))
    assert await crowd.includes(newcomer)
    assert not await crowd.includes(opted_out)
    assert not await crowd.includes(newcomer + 1000)


async def test_points_expiry_30_days_before(settings: Settings) -> None:
    holder = await member(marketing_opt_out=True)  # service: opt-out does not matter
    await lot(holder, datetime(2028, 1, 1, tzinfo=SH))
    fire = datetime(2027, 12, 1, 2, tzinfo=UTC)
    assert await claimed(settings, builtin("points_expiry"), fire) == {holder: "2027-12-31"}
    assert await selected(settings, builtin("points_expiry"), fire + timedelta(days=1)) == []


async def test_tier_warning_30_days_before_the_evaluation(settings: Settings) -> None:
    low = await member(tier="silver", growth=3000)
    await GrowthEntry.create(
        member_id=low,
        idempotency_key="g:low",
        amount=100,
        created_at=datetime(2027, 3, 1, tzinfo=SH),
    )
    kept = await member(tier="silver", growth=3000)
    await GrowthEntry.create(
        member_id=kept,
        idempotency_key="g:kept",
        amount=3000,
        created_at=datetime(2027, 3, 1, tzinfo=SH),
    )
    fire = datetime(2027, 12, 2, 2, tzinfo=UTC)
    assert await claimed(settings, builtin("tier_warning"), fire) == {low: "2027"}
