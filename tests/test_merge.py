"""ONE-ID merge and undo: every movable row moves, the ledger stays exact, undo is exact."""

from __future__ import annotations

import asyncio
import itertools
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tortoise import Tortoise

from bot.cli import main
from bot.context import Services
from bot.services import points
from bot.services.merge import MergeRefused, merge_members, unmerge
from storage.member_data import CLASSIFIED
from storage.models import (
    AuditLog,
    Consent,
    Coupon,
    CustomerGroup,
    GroupMember,
    GrowthEntry,
    Identity,
    Member,
    MemberMerge,
    MemberTag,
    Order,
    PointsEntry,
    PointsLot,
    Redemption,
    Reward,
    SignIn,
    StaffCustomer,
    Tag,
    TagGroup,
)
from storage.repos.merge import move_models
from tests.cli_support import with_db, write_config
from tests.conftest import OA_APPID, AppMaker
from tests.fakes import FakeWall
from tests.helpers import oa_text, post_oa

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 6, 10, 9, 0, tzinfo=SH)
SOON = datetime(2026, 12, 1, tzinfo=SH)  # the merged member's lot: spent first
LATER = datetime(2028, 1, 1, tzinfo=SH)
_codes = itertools.count(1)
_keys = itertools.count(1)


async def new_member(**fields: Any) -> int:
    """A fresh active member."""
    member = await Member.create(code=f"G{next(_codes):07d}", created_at=T0, **fields)
    return int(member.id)


async def identity(member_id: int, value: str, kind: str = "oa_openid", app: str = OA_APPID) -> int:
    """An identity of the member."""
    row = await Identity.create(
        kind=kind, app=app, value=value, member_id=member_id, followed=True, created_at=T0
    )
    return int(row.id)


async def earn(member_id: int, amount: int, expires_at: datetime, now: datetime = T0) -> None:
    """An earning of ``amount`` points."""
    await points.earn(
        member_id,
        amount,
        f"earn:{next(_keys)}",
        now=now,
        expires_at=expires_at,
        reason="test",
        source="test",
    )


async def spend(member_id: int, amount: int, now: datetime = T0) -> None:
    """A spend of ``amount`` points."""
    await points.spend(
        member_id, amount, f"spend:{next(_keys)}", now=now, reason="test", source="test"
    )


async def tag(name: str) -> Tag:
    """A tag in a fresh group."""
    group = await TagGroup.create(name=f"g-{name}")
    return await Tag.create(group=group, name=name)


async def table_rows() -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (for "nothing changed" checks)."""
    assert Tortoise.apps is not None
    return {
        name: await model.all().order_by("id").values()
        for name, model in sorted(Tortoise.apps["models"].items())
    }


async def member_snapshot(member_id: int) -> dict[str, Any]:
    """The member row, its rows of every movable model, its lots' allocations."""
    rows: dict[str, Any] = {"Member": await Member.filter(id=member_id).values()}
    for name, model, columns in move_models():
        for column in columns:
            rows[f"{name}.{column}"] = (
                await model.filter(**{column: member_id}).order_by("id").values()
            )
    lots = await PointsLot.filter(member_id=member_id).values_list("id", flat=True)
    from storage.models import PointsAllocation

    rows["allocations"] = sorted(
        (a["entry_id"], a["lot_id"], a["amount"])
        for a in await PointsAllocation.filter(lot_id__in=list(lots)).values()
    )
    return rows


async def assert_reconciled() -> None:
    """Both ledger invariants hold for every member."""
    assert await points.reconcile() == []


async def seed_pair(services: Services) -> tuple[int, int, Tag]:
    """A survivor and a merged member with points, debt-free spends, growth, tags, sign-ins."""
    survivor = await new_member(tier="silver", growth=3500, last_active_at=T0)
    merged = await new_member(
        birthday=date(1990, 3, 4), birth_md=304, last_active_at=T0 + timedelta(hours=1)
    )
    await identity(survivor, "oSurvivor", kind="unionid", app="")
    await identity(merged, "oMerged")
    await earn(survivor, 300, LATER)
    await spend(survivor, 40)
    await earn(merged, 200, SOON)
    await earn(merged, 50, LATER)
    await spend(merged, 30)
    await services.tiers.add_growth(merged, 800, "g:m", now=T0, reason="t", source="t")
    shared, other = await tag("shared"), await tag("other")
    for member_id in (survivor, merged):
        await MemberTag.create(member_id=member_id, tag=shared, source="staff", created_at=T0)
    await MemberTag.create(member_id=merged, tag=other, source="staff", created_at=T0)
    await services.signin.sign_in(survivor, T0)
    await services.signin.sign_in(merged, T0)  # the same day: a clash
    await services.signin.sign_in(merged, T0 - timedelta(days=1))
    await Consent.create(member_id=merged, purpose="marketing", granted=True, at=T0)
    return survivor, merged, shared


async def merge(survivor: int, merged: int, services: Services) -> int:
    result = await merge_members(
        survivor, merged, actor="staff:li", reason="same person", now=T0, services=services
    )
    return result.merge_id


# --- merge --------------------------------------------------------------------------


async def test_merge_moves_everything_and_keeps_the_ledger_exact(services: Services) -> None:
    survivor, merged, shared = await seed_pair(services)
    before_s = await Member.get(id=survivor)
    before_m = await Member.get(id=merged)
    result = await merge_members(
        survivor, merged, actor="staff:li", reason="same person", now=T0, services=services
    )
    s, m = await Member.get(id=survivor), await Member.get(id=merged)
    assert s.points_balance == before_s.points_balance + before_m.points_balance
    assert s.points_debt == before_s.points_debt + before_m.points_debt == 0
    assert s.growth == 3500 + 800
    assert s.tier == "silver"  # 4300 is silver: the merge never lowers, here it keeps
    assert s.birthday == date(1990, 3, 4)
    assert s.birth_md == 304
    assert s.last_active_at == T0 + timedelta(hours=1)
    assert (m.status, m.merged_into_id, m.points_balance, m.points_debt, m.growth) == (
        "merged",
        survivor,
        0,
        0,
        0,
    )
    assert await Identity.filter(member_id=merged).count() == 0
    assert await PointsEntry.filter(member_id=merged).count() == 0
    assert await PointsLot.filter(member_id=merged).count() == 0
    # the same-day sign-in and the shared tag stay with the merged member, recorded
    kept_signin = await SignIn.get(member_id=merged)
    assert kept_signin.day == T0.date()
    assert await MemberTag.filter(member_id=merged, tag_id=shared.id).count() == 1
    assert result.kept == {"MemberTag": 1, "SignIn": 1}
    assert await SignIn.filter(member_id=survivor).count() == 2
    record = await MemberMerge.get(id=result.merge_id)
    assert record.moved["kept"]["SignIn"] == [kept_signin.id]
    assert set(record.moved["rows"]) >= {"Identity", "PointsEntry", "PointsLot", "SignIn"}
    await assert_reconciled()
    audit = await AuditLog.get(action="member.merge")
    assert audit.actor == "staff:li"
    assert audit.detail["merge_id"] == result.merge_id
    assert audit.detail["moved"]["PointsEntry"] == 5  # two earnings, a spend, two sign-ins
    # the kept sign-in's points moved with its entry: balances stay exact
    open_lots = await PointsLot.filter(member_id=survivor, closed_at=None)
    assert s.points_balance == sum(lot.remaining for lot in open_lots)
    signin_entry = await PointsEntry.get(idempotency_key=f"signin:{merged}:{T0.date()}")
    assert signin_entry.member_id == survivor
    assert signin_entry.amount == kept_signin.points > 0


async def test_tier_rises_to_what_the_combined_growth_reaches(services: Services) -> None:
    survivor = await new_member(growth=2000)
    merged = await new_member(growth=0)
    await services.tiers.add_growth(merged, 1500, "g:x", now=T0, reason="t", source="t")
    await merge(survivor, merged, services)
    assert (await Member.get(id=survivor)).tier == "silver"


async def test_mobile_moves_to_a_survivor_without_one(services: Services) -> None:
    survivor = await new_member()
    merged = await new_member(mobile_hash="h" * 64, mobile_cipher="c1")
    merge_id = await merge(survivor, merged, services)
    s, m = await Member.get(id=survivor), await Member.get(id=merged)
    assert (s.mobile_hash, s.mobile_cipher, m.mobile_hash) == ("h" * 64, "c1", None)
    await unmerge(merge_id, actor="li", now=T0, services=services)
    s, m = await Member.get(id=survivor), await Member.get(id=merged)
    assert (s.mobile_hash, m.mobile_hash, m.mobile_cipher) == (None, "h" * 64, "c1")


@pytest.mark.parametrize("conflict", ["openids", "mobiles", "unionids"])
async def test_a_conflicting_merge_moves_nothing(services: Services, conflict: str) -> None:
    survivor, merged, _ = await seed_pair(services)
    if conflict == "openids":  # two openids of one Official Account: two WeChat users
        await identity(survivor, "oAnother")
    elif conflict == "mobiles":
        await Member.filter(id=survivor).update(mobile_hash="a" * 64)
        await Member.filter(id=merged).update(mobile_hash="b" * 64)
    else:
        await identity(merged, "uOther", kind="unionid", app="")
    before = await table_rows()
    with pytest.raises(MergeRefused) as refused:
        await merge(survivor, merged, services)
    assert "different" in refused.value.reason
    assert await table_rows() == before


async def test_self_and_inactive_merges_are_refused(services: Services) -> None:
    first, second, third = await new_member(), await new_member(), await new_member()
    with pytest.raises(MergeRefused, match="itself"):
        await merge(first, first, services)
    await merge(first, second, services)
    with pytest.raises(MergeRefused, match="merged, not active"):
        await merge(third, second, services)
    await Member.filter(id=third).update(status="deleted")
    before = await table_rows()
    with pytest.raises(MergeRefused, match="deleted, not active"):
        await merge(first, third, services)
    assert await table_rows() == before


async def test_every_movable_model_has_its_rows_moved(services: Services) -> None:
    survivor, merged = await new_member(), await new_member()
    reward = await Reward.create(code="R1", name="券", cost_points=10, created_at=T0, updated_at=T0)
    await earn(merged, 100, LATER)
    entry = await PointsEntry.get(member_id=merged)
    redemption = await Redemption.create(
        idempotency_key="r1", reward=reward, member_id=merged, points=10, entry_id=entry.id,
        created_at=T0,
    )  # fmt: skip
    made = {
        "Identity": lambda: identity(merged, "oEvery"),
        "MemberTag": lambda: _member_tag(merged),
        "Consent": lambda: Consent.create(
            member_id=merged, purpose="marketing", granted=True, at=T0
        ),
        "PointsEntry": lambda: _none(),  # written by the earning above
        "PointsLot": lambda: _none(),
        "GrowthEntry": lambda: GrowthEntry.create(
            member_id=merged, idempotency_key="gx", amount=5, created_at=T0
        ),
        "SignIn": lambda: SignIn.create(member_id=merged, day=T0.date(), streak=1, created_at=T0),
        "Order": lambda: Order.create(
            external_id="o1", member_id=merged, amount_fen=100, paid_at=T0, created_at=T0
        ),
        "Redemption": lambda: _none(redemption),
        "Coupon": lambda: Coupon.create(
            code="C1", member_id=merged, name="券", valid_from=T0, valid_to=LATER, created_at=T0
        ),
        "StaffCustomer": lambda: StaffCustomer.create(
            corp="ww1", staff_userid="zhangsan", external_userid="wmX", member_id=merged,
            created_at=T0, updated_at=T0,
        ),
        "GroupMember": lambda: _group_member(merged),
    }  # fmt: skip
    movable = {name for name, data in CLASSIFIED.items() if data.merge == "move"}
    assert movable == set(made), "add a row factory for the new movable model"
    assert {name for name, _, _ in move_models()} == movable
    for factory in made.values():
        await factory()
    before = {
        name: set(await model.filter(**{columns[0]: merged}).values_list("id", flat=True))
        for name, model, columns in move_models()
    }
    assert all(before.values()), before
    merge_id = await merge(survivor, merged, services)
    record = await MemberMerge.get(id=merge_id)
    for name, model, columns in move_models():
        assert not await model.filter(**{columns[0]: merged}).exists(), name
        now_there = await model.filter(**{columns[0]: survivor}).values_list("id", flat=True)
        assert before[name] <= set(now_there), name
        assert set(record.moved["rows"][name]) == before[name], name
    await assert_reconciled()


async def _member_tag(member_id: int) -> None:
    await MemberTag.create(
        member_id=member_id, tag=await tag("every"), source="staff", created_at=T0
    )


async def _none(value: Any = None) -> Any:
    return value


# --- undo ---------------------------------------------------------------------------


async def test_merge_then_undo_restores_both_members_exactly(services: Services) -> None:
    survivor, merged, _ = await seed_pair(services)
    before = (await member_snapshot(survivor), await member_snapshot(merged))
    merge_id = await merge(survivor, merged, services)
    assert (await member_snapshot(survivor), await member_snapshot(merged)) != before
    result = await unmerge(merge_id, actor="ops", now=T0 + timedelta(hours=2), services=services)
    assert result.reallocated == 0
    assert (await member_snapshot(survivor), await member_snapshot(merged)) == before
    record = await MemberMerge.get(id=merge_id)
    assert record.status == "undone"
    assert record.undone_at is not None
    await assert_reconciled()
    audit = await AuditLog.get(action="member.unmerge")
    assert (audit.actor, audit.detail["merge_id"]) == ("ops", merge_id)
    with pytest.raises(MergeRefused, match="already undone"):
        await unmerge(merge_id, actor="ops", now=T0, services=services)


async def test_undo_after_later_activity_gives_back_what_the_survivor_spent(
    services: Services,
) -> None:
    survivor, merged, _ = await seed_pair(services)
    merged_before = await member_snapshot(merged)
    survivor_balance = (await Member.get(id=survivor)).points_balance
    merge_id = await merge(survivor, merged, services)
    later = T0 + timedelta(days=2)
    await earn(survivor, 70, LATER, now=later)
    await spend(survivor, 150, now=later)  # the merged member's lot expires first: spent first
    await services.signin.sign_in(survivor, later)
    await assert_reconciled()
    after_merge = {
        int(i)
        for i in await PointsEntry.filter(member_id=survivor, created_at__gte=later).values_list(
            "id", flat=True
        )
    }
    result = await unmerge(merge_id, actor="ops", now=later, services=services)
    assert result.reallocated == 150
    await assert_reconciled()
    assert await member_snapshot(merged) == merged_before
    s = await Member.get(id=survivor)
    signin_points = (await SignIn.get(member_id=survivor, day=later.date())).points
    assert s.points_balance == survivor_balance + 70 - 150 + signin_points
    stays = await PointsEntry.filter(member_id=survivor).values_list("id", flat=True)
    assert after_merge <= set(stays)
    assert await SignIn.filter(member_id=survivor, day=later.date()).exists()
    assert (await Member.get(id=merged)).status == "active"


async def test_undo_after_a_moved_lot_expired(services: Services) -> None:
    survivor = await new_member()
    merged = await new_member()
    await earn(survivor, 100, LATER)
    await earn(merged, 80, SOON)
    merge_id = await merge(survivor, merged, services)
    await spend(survivor, 30)  # from the merged member's lot
    assert await points.expire_due(SOON + timedelta(days=1)) == 1  # the other 50 expire
    await assert_reconciled()
    await unmerge(merge_id, actor="ops", now=SOON + timedelta(days=2), services=services)
    await assert_reconciled()
    m, s = await Member.get(id=merged), await Member.get(id=survivor)
    assert (m.points_balance, m.points_debt) == (0, 0)  # all 80 expired for the merged member
    assert (s.points_balance, s.points_debt) == (70, 0)  # the survivor paid its 30
    kinds = await PointsEntry.filter(member_id=merged).order_by("id").values_list("kind", "amount")
    assert sorted(kinds) == [("earn", 80), ("expire", -50), ("expire", -30)]


async def test_undo_is_refused_when_the_survivor_cannot_pay_back(services: Services) -> None:
    survivor, merged = await new_member(), await new_member()
    await earn(survivor, 20, LATER)
    await earn(merged, 100, SOON)
    merge_id = await merge(survivor, merged, services)
    await spend(survivor, 90)  # 90 of the merged member's 100; the survivor holds 20
    before = await table_rows()
    with pytest.raises(MergeRefused) as refused:
        await unmerge(merge_id, actor="ops", now=T0, services=services)
    assert "spent 90" in refused.value.reason
    assert "only 20" in refused.value.reason
    assert await table_rows() == before
    assert (await MemberMerge.get(id=merge_id)).status == "done"


async def test_undo_is_refused_when_the_survivor_was_merged_since(services: Services) -> None:
    first, second, third = await new_member(), await new_member(), await new_member()
    merge_id = await merge(first, second, services)
    await merge(third, first, services)
    before = await table_rows()
    with pytest.raises(MergeRefused, match="merged since"):
        await unmerge(merge_id, actor="ops", now=T0, services=services)
    assert await table_rows() == before
    with pytest.raises(MergeRefused, match="no merge"):
        await unmerge(999_999, actor="ops", now=T0, services=services)


# --- the identity → member cache ----------------------------------------------------


async def test_the_next_callback_of_a_moved_openid_resolves_to_the_survivor(
    make_client: AppMaker, services: Services, wall: FakeWall
) -> None:
    client = await make_client()
    first = await post_oa(
        client, services.settings, oa_text("签到", "oCached"), timestamp=int(wall.now)
    )
    assert first.status == 200
    merged = (await Identity.get(value="oCached")).member_id
    assert await SignIn.filter(member_id=merged).count() == 1  # and the cache holds it now
    survivor = await new_member()
    await identity(survivor, "uSurvivor", kind="unionid", app="")
    await merge_members(survivor, merged, actor="li", reason="t", now=T0, services=services)
    wall.advance(86_400)
    second = await post_oa(
        client, services.settings, oa_text("签到", "oCached"), timestamp=int(wall.now)
    )
    assert second.status == 200
    assert await SignIn.filter(member_id=survivor).count() == 2  # the moved one and today's
    assert await SignIn.filter(member_id=merged).count() == 0
    await assert_reconciled()


# --- CLI ----------------------------------------------------------------------------


async def _cli_seed() -> tuple[int, int]:
    survivor = await Member.create(code="SURVIVE1", created_at=T0)
    merged = await Member.create(code="MERGED01", created_at=T0)
    await earn(int(merged.id), 40, LATER)
    return int(survivor.id), int(merged.id)


async def _cli_state() -> list[Any]:
    return [
        await Member.all().order_by("id").values_list("status", "points_balance"),
        await MemberMerge.all().values_list("id", "status"),
        await AuditLog.all().order_by("id").values_list("actor", "action"),
    ]


def test_cli_merge_and_unmerge(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url)
    with_db(db_url, _cli_seed, fresh=True)
    base = ["--config", config, "members"]
    assert main([*base, "merge", "SURVIVE1", "MERGED01", "--actor", "li"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("merge ")
    assert "MERGED01 into SURVIVE1" in out
    merge_id = int(out.split()[1].rstrip(":"))
    assert main([*base, "merge", "SURVIVE1", "MERGED01"]) == 2
    assert "merge refused: member MERGED01 is merged" in capsys.readouterr().err
    assert main([*base, "merge", "SURVIVE1", "NOBODY"]) == 2
    assert main([*base, "unmerge", str(merge_id), "--actor", "wang"]) == 0
    assert f"merge {merge_id} undone" in capsys.readouterr().out
    assert main([*base, "unmerge", str(merge_id)]) == 2
    assert "already undone" in capsys.readouterr().err
    members, merges, audits = with_db(db_url, _cli_state)
    assert members == [("active", 0), ("active", 40)]
    assert merges == [(merge_id, "undone")]
    assert audits == [("li", "member.merge"), ("wang", "member.unmerge")]


async def test_undo_is_refused_when_the_survivor_settled_the_merged_debt(
    services: Services,
) -> None:
    survivor, merged = await new_member(), await new_member()
    await earn(merged, 10, LATER)
    await points.reverse(merged, 30, "refund:1", now=T0, reason="refund", source="order")
    assert (await Member.get(id=merged)).points_debt == 20
    merge_id = await merge(survivor, merged, services)
    assert (await Member.get(id=survivor)).points_debt == 20
    await earn(survivor, 50, LATER)  # settles the 20 the merged member owed
    await assert_reconciled()
    before = await table_rows()
    with pytest.raises(MergeRefused, match="settled 20 points of debt"):
        await unmerge(merge_id, actor="ops", now=T0, services=services)
    assert await table_rows() == before


async def test_merge_and_undo_with_debt_and_no_later_activity_are_exact(
    services: Services,
) -> None:
    survivor, merged = await new_member(), await new_member()
    await earn(survivor, 40, LATER)
    await earn(merged, 10, LATER)
    await points.reverse(merged, 30, "refund:2", now=T0, reason="refund", source="order")
    before = (await member_snapshot(survivor), await member_snapshot(merged))
    merge_id = await merge(survivor, merged, services)
    s = await Member.get(id=survivor)
    assert (s.points_balance, s.points_debt) == (40, 20)  # added, not settled
    await assert_reconciled()
    await unmerge(merge_id, actor="ops", now=T0, services=services)
    assert (await member_snapshot(survivor), await member_snapshot(merged)) == before
    await assert_reconciled()


# --- races --------------------------------------------------------------------------


async def test_opposite_merges_at_once_one_wins_and_nothing_tears(services: Services) -> None:
    first, second = await new_member(), await new_member()
    await earn(first, 100, LATER)
    await earn(second, 60, SOON)
    results = await asyncio.gather(
        merge(first, second, services), merge(second, first, services), return_exceptions=True
    )
    assert sum(isinstance(r, int) for r in results) == 1
    assert sum(isinstance(r, MergeRefused) for r in results) == 1
    assert await Member.filter(status="merged").count() == 1
    assert (await Member.get(status="active")).points_balance == 160
    await assert_reconciled()


async def test_spends_racing_a_merge_keep_the_ledger_exact(services: Services) -> None:
    survivor, merged = await new_member(), await new_member()
    await earn(survivor, 100, LATER)
    await earn(merged, 100, SOON)

    async def spend_merged(n: int) -> str:
        try:
            await spend(merged, 10)
        except points.PointsError:
            return "refused"
        return "spent"

    results = await asyncio.gather(
        *(spend_merged(n) for n in range(3)),
        merge(survivor, merged, services),
        *(spend_merged(n) for n in range(3, 6)),
    )
    spent = results.count("spent")
    await assert_reconciled()
    total = sum(m.points_balance for m in await Member.all())
    assert total == 200 - 10 * spent
    assert (await Member.get(id=merged)).status == "merged"


async def _group_member(member_id: int) -> None:
    group = await CustomerGroup.create(chat_id="wrChat1", updated_at=T0)
    await GroupMember.create(group=group, userid="wmX", member_id=member_id, updated_at=T0)
