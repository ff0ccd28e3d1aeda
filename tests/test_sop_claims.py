"""Touchpoint claims (set-based, idempotent, batched), paging, channel split, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Settings
from sop.audiences import AUDIENCES, AudienceError, check_audience
from storage.models import Touchpoint
from tests.audience_support import (
    SH,
    audience,
    follower,
    member,
    occurrences,
    rule,
    staff_customer,
)
from tests.conftest import OA_APPID

FIRE = datetime(2027, 5, 20, 10, tzinfo=SH)


async def test_paging_by_id_and_count(settings: Settings) -> None:
    ids = [await member() for _ in range(7)]
    await member(status="merged")
    crowd = audience(settings, rule("all"), FIRE)
    assert await crowd.count() == 7
    assert await crowd.member_ids(0, 3) == ids[:3]
    assert await crowd.member_ids(ids[2], 3) == ids[3:6]
    assert await crowd.member_ids(ids[5], 3) == ids[6:]
    assert await crowd.member_ids(ids[6], 3) == []
    assert await crowd.sample(2) == ids[:2]


async def test_claim_in_batches_is_idempotent(settings: Settings) -> None:
    ids = [await member() for _ in range(5)]
    await member(marketing_opt_out=True)
    crowd = audience(settings, rule("all", once_per="month"), FIRE)
    seen: list[int] = []
    due = FIRE + timedelta(hours=1)
    claimed = await crowd.claim(run_id=7, due_at=due, now=FIRE, batch=2, progress=seen.append)
    assert claimed == 5
    assert seen == [2, 4, 5]
    rows = await Touchpoint.filter(sop_id="t_sop").order_by("member_id")
    assert [r.member_id for r in rows] == ids
    first = rows[0]
    assert (first.occurrence, first.run_id, first.status, first.attempts) == (
        "2027-05",
        7,
        "pending",
        0,
    )
    assert (first.granted, first.outcome) == (False, "")
    assert first.due_at == due.astimezone(UTC)
    assert first.created_at == FIRE.astimezone(UTC)
    again: list[int] = []
    assert await crowd.claim(run_id=7, due_at=due, now=FIRE, batch=2, progress=again.append) == 0
    assert again == [0, 0, 0]
    # a member who joins the audience later is claimed by the next claim, alone
    late = await member()
    assert await crowd.claim(run_id=8, due_at=due, now=FIRE, batch=100) == 1
    assert (await occurrences())[late] == "2027-05"


async def test_claim_of_an_empty_audience(settings: Settings) -> None:
    await member()
    crowd = audience(settings, rule("member_day_active", once_per="month"), FIRE)
    seen: list[int] = []
    assert await crowd.claim(run_id=None, due_at=FIRE, now=FIRE, progress=seen.append) == 0
    assert seen == [0]


async def test_sliding_window_keeps_members_out_for_n_days(settings: Settings) -> None:
    one = await member()
    sop = rule("all", once_per="7 days")
    assert await audience(settings, sop, FIRE).claim(run_id=1, due_at=FIRE, now=FIRE) == 1
    two = await member()
    for days, expected in ((1, [two]), (6, [two]), (7, [one, two])):
        at = FIRE + timedelta(days=days)
        crowd = audience(settings, sop, at)
        assert await crowd.member_ids() == expected, days
    at = FIRE + timedelta(days=3)
    assert await audience(settings, sop, at).claim(run_id=2, due_at=at, now=at) == 1
    rows = await Touchpoint.filter(sop_id="t_sop").values_list("member_id", "occurrence")
    assert sorted(rows) == [(one, "2027-05-20"), (two, "2027-05-23")]


async def test_channel_split(settings: Settings) -> None:
    now = datetime(2027, 5, 20, 12, tzinfo=SH)
    hour_ago = now - timedelta(hours=1)
    messaged = await member()
    await follower(messaged, OA_APPID, last_message_at=hour_ago, cs_sent_since_message=4)
    spent = await member()  # five sent since the message: the window is used up
    await follower(spent, OA_APPID, last_message_at=hour_ago, cs_sent_since_message=5)
    clicked = await member()
    await follower(
        clicked, OA_APPID, last_event_at=now - timedelta(seconds=30), cs_sent_since_event=2
    )
    stale = await member()  # the message is 49 hours old; a WeCom relation remains
    await follower(stale, OA_APPID, last_message_at=now - timedelta(hours=49))
    await staff_customer(stale)
    other_app = await member()  # an open window on another account does not count
    await follower(other_app, "wxcompat00000001", last_message_at=hour_ago)
    unfollowed = await member()
    await follower(unfollowed, OA_APPID, followed=False, last_message_at=hour_ago)
    ended = await member()
    await staff_customer(ended, status="ended")
    marketing = audience(settings, rule("all"), now)
    assert await marketing.channel_split(now) == {
        "oa_cs": 2,
        "oa_template": 0,
        "wecom": 1,
        "unreachable": 4,
    }
    # service messages may use a template message on the verified service account
    service = audience(settings, rule("all", kind="service"), now)
    assert await service.channel_split(now) == {
        "oa_cs": 2,
        "oa_template": 2,
        "wecom": 0,
        "unreachable": 3,
    }
    # the plaintext account is not a verified service account: no template messages
    plain = audience(
        settings, rule("all", kind="service").model_copy(update={"account": "plain"}), now
    )
    assert await plain.channel_split(now) == {
        "oa_cs": 0,
        "oa_template": 0,
        "wecom": 1,
        "unreachable": 6,
    }


def test_check_audience_names_the_problem() -> None:
    for name in AUDIENCES:
        params = {"days": 3} if name == "joined_days_ago" else {}
        check_audience(rule(name, params))
    with pytest.raises(AudienceError, match="unknown audience 'birthdays'"):
        check_audience(rule("birthdays"))
    with pytest.raises(AudienceError, match="'inactive': days"):
        check_audience(rule("inactive", {"days": [60, 30]}))
    with pytest.raises(AudienceError, match="colour"):
        check_audience(rule("active", {"colour": "red"}))
    with pytest.raises(AudienceError, match="'joined_days_ago': days"):
        check_audience(rule("joined_days_ago"))
    with pytest.raises(AudienceError, match="tags_any"):
        check_audience(rule("all", {"tags_any": "vip"}))


async def test_a_naive_fire_time_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        audience(settings, rule("all"), datetime(2027, 5, 20, 9))
