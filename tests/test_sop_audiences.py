"""SOP audiences select exactly the right members on crafted data (injected fire times).

Fire times are given in UTC where it matters: the business day is Asia/Shanghai's, so a
server clock in UTC must not shift birthdays, member days or sign-in days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bot.config import Settings
from sop.audiences import AudienceError
from sop.occurrence import bucket
from storage.models import GrowthEntry, Touchpoint
from tests.audience_support import (
    SH,
    audience,
    lot,
    member,
    occurrences,
    rule,
    selected,
    signed,
    tag,
)
from tests.conftest import base_config, make_settings


def test_occurrence_buckets() -> None:
    day = date(2027, 5, 20)
    keys = {w: bucket(rule("all", once_per=w), day) for w in ("day", "week", "month", "year")}
    assert keys == {"day": "2027-05-20", "week": "2027-W20", "month": "2027-05", "year": "2027"}
    assert bucket(rule("all", once_per="ever"), day) == "ever"
    assert bucket(rule("all", once_per="7 days"), day) == "2027-05-20"
    assert bucket(rule("all", once_per="week"), date(2027, 1, 1)) == "2026-W53"


async def test_birthday_uses_the_business_day_on_a_utc_clock(settings: Settings) -> None:
    may20 = await member(birthday=date(1990, 5, 20))
    may21 = await member(birthday=date(1991, 5, 21))
    await member()  # no birthday
    sop = rule("birthday_today", kind="service")
    # 09:00 in Shanghai is 01:00Z; 23:30Z on the 20th is already the 21st in Shanghai
    assert await selected(settings, sop, datetime(2027, 5, 20, 1, 0, tzinfo=UTC)) == [may20]
    assert await selected(settings, sop, datetime(2027, 5, 19, 17, 0, tzinfo=UTC)) == [may20]
    assert await selected(settings, sop, datetime(2027, 5, 20, 16, 30, tzinfo=UTC)) == [may21]
    assert await audience(settings, sop, datetime(2027, 5, 20, 9, tzinfo=SH)).count() == 1


async def test_feb_29_birthday_on_feb_28_in_common_years_once(settings: Settings) -> None:
    leap = await member(birthday=date(2000, 2, 29))
    feb28 = await member(birthday=date(2001, 2, 28))
    sop = rule("birthday_today", kind="service")

    def at(y: int, m: int, d: int) -> datetime:
        return datetime(y, m, d, 9, tzinfo=SH)

    assert await selected(settings, sop, at(2027, 2, 28)) == [leap, feb28]
    assert await selected(settings, sop, at(2027, 3, 1)) == []
    assert await selected(settings, sop, at(2028, 2, 28)) == [feb28]
    assert await selected(settings, sop, at(2028, 2, 29)) == [leap]
    now = at(2027, 2, 28)
    first = await audience(settings, sop, now).claim(run_id=1, due_at=now, now=now)
    again = await audience(settings, sop, now).claim(run_id=2, due_at=now, now=now)
    assert (first, again) == (2, 0)
    assert await occurrences() == {leap: "2027", feb28: "2027"}


async def test_birthday_month(settings: Settings) -> None:
    may1 = await member(birthday=date(1990, 5, 1))
    may31 = await member(birthday=date(1990, 5, 31))
    await member(birthday=date(1990, 6, 1))
    await member(birthday=date(1990, 4, 30))
    sop = rule("birthday_month", kind="service")
    assert await selected(settings, sop, datetime(2027, 5, 20, 9, tzinfo=SH)) == [may1, may31]


async def test_member_day_31_falls_on_the_months_last_day(database: str) -> None:
    settings = make_settings(base_config(database), member_day={"day": 31})
    recent = datetime(2027, 4, 20, 12, tzinfo=SH)
    active = await member(last_active_at=recent)
    await member(last_active_at=recent - timedelta(days=60))
    sop = rule("member_day_active", once_per="month")
    assert await selected(settings, sop, datetime(2027, 4, 30, 2, tzinfo=UTC)) == [active]
    for day in (date(2027, 4, 29), date(2027, 5, 1), date(2027, 4, 8)):
        fire = datetime.combine(day, datetime.min.time(), SH) + timedelta(hours=10)
        assert await selected(settings, sop, fire) == [], day
    # 10:00 on 30 April in Shanghai is 02:00Z; 20:00Z on 30 April is 1 May in Shanghai
    assert await selected(settings, sop, datetime(2027, 4, 30, 20, tzinfo=UTC)) == []
    fire = datetime(2027, 4, 30, 10, tzinfo=SH)
    assert await audience(settings, sop, fire).claim(run_id=None, due_at=fire, now=fire) == 1
    assert await occurrences() == {active: "2027-04"}


async def test_member_day_default_is_the_eighth(settings: Settings) -> None:
    active = await member(last_active_at=datetime(2027, 3, 1, tzinfo=SH))
    sop = rule("member_day_active", {"days": 30}, once_per="month")
    assert await selected(settings, sop, datetime(2027, 3, 8, 10, tzinfo=SH)) == [active]
    assert await selected(settings, sop, datetime(2027, 3, 9, 10, tzinfo=SH)) == []


async def test_active_days(settings: Settings) -> None:
    fire = datetime(2027, 5, 20, 10, tzinfo=SH)
    # active on one of the last 30 business days: 21 April 00:00 Shanghai is the bound
    inside = await member(last_active_at=datetime(2027, 4, 21, 0, 0, tzinfo=SH))
    await member(last_active_at=datetime(2027, 4, 20, 23, 59, tzinfo=SH))
    await member()  # never active
    assert await selected(settings, rule("active"), fire) == [inside]


async def test_signed_in_yesterday_not_today(settings: Settings) -> None:
    yesterday_only = await member()
    await signed(yesterday_only, date(2027, 5, 19))
    both = await member()
    await signed(both, date(2027, 5, 19), date(2027, 5, 20))
    older = await member()
    await signed(older, date(2027, 5, 18))
    await member()
    sop = rule("signed_in_yesterday_not_today", once_per="day")
    # 20:00 in Shanghai is 12:00Z; 16:30Z on the 19th is already 00:30 on the 20th
    assert await selected(settings, sop, datetime(2027, 5, 20, 12, tzinfo=UTC)) == [yesterday_only]
    assert await selected(settings, sop, datetime(2027, 5, 19, 16, 30, tzinfo=UTC)) == [
        yesterday_only
    ]
    assert await selected(settings, sop, datetime(2027, 5, 19, 12, tzinfo=UTC)) == [older]


async def test_inactive_30_and_60_with_their_keys(settings: Settings) -> None:
    def day(m: int, d: int, hour: int = 12, year: int = 2027) -> datetime:
        return datetime(year, m, d, hour, tzinfo=SH)

    today = await member(last_active_at=day(5, 20))
    at_29 = await member(last_active_at=day(4, 21))  # 29 days: not yet
    at_30 = await member(last_active_at=day(4, 20, 7))  # 19 April 23:00Z, 20 April in Shanghai
    at_59 = await member(last_active_at=day(3, 22))
    at_60 = await member(last_active_at=day(3, 21))
    long_ago = await member(last_active_at=day(1, 1, year=2026))
    never = await member(created_at=day(1, 5, 9))
    fire = datetime(2027, 5, 20, 2, tzinfo=UTC)
    sop = rule("inactive", {"days": [30, 60]}, once_per="ever")
    assert await selected(settings, sop, fire) == [at_30, at_59, at_60, long_ago, never]
    assert await audience(settings, sop, fire).claim(run_id=1, due_at=fire, now=fire) == 5
    assert await occurrences() == {
        at_30: "reactivation:2027-04-20:30",
        at_59: "reactivation:2027-03-22:30",
        at_60: "reactivation:2027-03-21:60",
        long_ago: "reactivation:2026-01-01:60",
        never: "reactivation:2027-01-05:60",
    }
    # thirty days on: the 30 touch for the two who lapsed since, the 60 touch for the
    # two who had the 30 one, nothing again for the others
    later = fire + timedelta(days=30)
    assert await audience(settings, sop, later).claim(run_id=2, due_at=later, now=later) == 4
    rows = await Touchpoint.filter(run_id=2).values_list("member_id", "occurrence")
    assert sorted(rows) == [
        (today, "reactivation:2027-05-20:30"),
        (at_29, "reactivation:2027-04-21:30"),
        (at_30, "reactivation:2027-04-20:60"),
        (at_59, "reactivation:2027-03-22:60"),
    ]
    assert await audience(settings, sop, later).claim(run_id=3, due_at=later, now=later) == 0


async def test_joined_days_ago(settings: Settings) -> None:
    joined = await member(created_at=datetime(2027, 5, 17, 0, 30, tzinfo=SH))
    await member(created_at=datetime(2027, 5, 16, 23, 59, tzinfo=SH))
    await member(created_at=datetime(2027, 5, 18, 0, 0, tzinfo=SH))
    sop = rule("joined_days_ago", {"days": 3})
    assert await selected(settings, sop, datetime(2027, 5, 20, 2, tzinfo=UTC)) == [joined]


async def test_base_condition_marketing_and_service(settings: Settings) -> None:
    fine = await member()
    merged = await member(status="merged", merged_into_id=fine)
    erased = await member(deleted_at=datetime(2027, 1, 1, tzinfo=SH))
    opted_out = await member(marketing_opt_out=True)
    fire = datetime(2027, 5, 20, 9, tzinfo=SH)
    assert await selected(settings, rule("all"), fire) == [fine]
    assert await selected(settings, rule("all", kind="service"), fire) == [fine, opted_out]
    assert merged not in await selected(settings, rule("all", kind="service"), fire)
    assert erased not in await selected(settings, rule("all", kind="service"), fire)


async def test_tags_any_all_none_ignore_deleted_tags(settings: Settings) -> None:
    vip_new = await member()
    await tag(vip_new, "vip")
    await tag(vip_new, "new")
    vip = await member()
    await tag(vip, "vip")
    gone = await member()
    await tag(gone, "old", deleted=True)
    plain = await member()
    fire = datetime(2027, 5, 20, 9, tzinfo=SH)

    async def pick(**params: list[str]) -> list[int]:
        return await selected(settings, rule("all", params), fire)

    assert await pick(tags_any=["vip", "old"]) == [vip_new, vip]
    assert await pick(tags_all=["vip", "new"]) == [vip_new]
    assert await pick(tags_all=["vip", "old"]) == []
    assert await pick(tags_none=["vip"]) == [gone, plain]
    assert await pick(tags_none=["old"]) == [vip_new, vip, gone, plain]
    assert await pick(tags_any=["vip"], tags_none=["new"]) == [vip]


async def test_tiers_filter(settings: Settings) -> None:
    silver = await member(tier="silver")
    gold = await member(tier="gold")
    await member()
    fire = datetime(2027, 5, 20, 9, tzinfo=SH)
    assert await selected(settings, rule("all", {"tiers": ["silver", "gold"]}), fire) == [
        silver,
        gold,
    ]
    with pytest.raises(AudienceError, match="unknown tiers"):
        audience(settings, rule("all", {"tiers": ["platinum"]}), fire)


async def test_points_expiring_keys_on_the_lots_last_day(settings: Settings) -> None:
    new_year = datetime(2028, 1, 1, tzinfo=SH)  # the default expiry: last day 31 December
    expiring = await member()
    await lot(expiring, new_year)
    await lot(expiring, new_year)  # two lots, one touch
    spent = await member()
    await lot(spent, new_year, remaining=0)
    closed = await member()
    await lot(closed, new_year, closed=True)
    later = await member()
    await lot(later, new_year + timedelta(days=1))
    sop = rule("points_expiring", {"days": 30}, kind="service", once_per="ever")
    fire = datetime(2027, 12, 1, 1, tzinfo=UTC)
    assert await selected(settings, sop, fire) == [expiring]
    assert await selected(settings, sop, fire + timedelta(days=1)) == [later]
    assert await audience(settings, sop, fire).claim(run_id=1, due_at=fire, now=fire) == 1
    assert await occurrences() == {expiring: "2027-12-31"}


async def growth(member_id: int, amount: int, at: datetime) -> None:
    """A growth entry earned at ``at``."""
    await GrowthEntry.create(
        member_id=member_id, idempotency_key=f"g:{member_id}:{at}", amount=amount, created_at=at
    )


async def test_tier_warning_selects_who_would_drop(settings: Settings) -> None:
    earned = datetime(2027, 6, 1, tzinfo=SH)
    silver_low = await member(tier="silver", growth=3500)
    await growth(silver_low, 1000, earned)
    await growth(silver_low, 2500, datetime(2026, 12, 31, 23, tzinfo=SH))  # before the year
    silver_kept = await member(tier="silver", growth=3500)
    await growth(silver_kept, 3500, earned)
    gold_low = await member(tier="gold", growth=9000)
    await growth(gold_low, 5999, earned)
    await member(growth=10)  # the lowest tier never drops
    sop = rule("tier_warning", {"days": 30}, kind="service")
    # the evaluation is 1 January 2028: the warning fires on 2 December 2027
    fire = datetime(2027, 12, 2, 1, tzinfo=UTC)
    assert await selected(settings, sop, fire) == [silver_low, gold_low]
    assert await selected(settings, sop, fire + timedelta(days=1)) == []
    assert await selected(settings, sop, fire - timedelta(days=1)) == []
