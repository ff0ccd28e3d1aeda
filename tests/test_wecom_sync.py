"""wecom sync-groups / sync-customers, contact ways, handover and the staff report,
against the fake platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.context import Services
from bot.services import wecom_groups, wecom_handover, wecom_sync
from storage.models import AuditLog, Identity, Member
from storage.models.members import Tag, TagGroup
from storage.models.wecom import (
    ContactWay,
    CustomerGroup,
    CustomerTag,
    CustomerTransfer,
    GroupMember,
    StaffCustomer,
)
from tests.conftest import FakeServer
from tests.fakes import FakeWall

EXTERNAL = "wecom_external_userid"


def _corp(services: Services) -> str:
    assert services.settings.wecom is not None
    return services.settings.wecom.corp_id


async def _snapshot() -> tuple[Any, ...]:
    tables = (StaffCustomer, CustomerTag, Identity, Member, CustomerGroup, GroupMember)
    out = []
    for table in tables:
        out.append([str(r) for r in await table.all().order_by("id").values()])
    return tuple(out)


async def test_sync_groups_twice_changes_nothing_the_second_time(services: Services) -> None:
    first = await wecom_groups.sync_groups(services)
    assert (first.groups, first.changed, first.joined) == (1, 1, 3)
    before = await _snapshot()
    second = await wecom_groups.sync_groups(services)
    assert (second.groups, second.changed) == (1, 0)
    assert await _snapshot() == before
    group = await CustomerGroup.get()
    assert group.owner_userid == "zhangsan"
    assert await GroupMember.filter(group=group, left_at__isnull=True).count() == 3


async def test_sync_customers_binds_members_and_tags_idempotently(
    services: Services, wall: FakeWall
) -> None:
    now = datetime.fromtimestamp(wall.now, UTC)
    oa = await Member.create(code="OAMEMBER", created_at=now, last_active_at=now)
    await Identity.create(kind="unionid", app="", value="uUnion1", member=oa, created_at=now)
    group = await TagGroup.create(name="客户等级", source="sync", wecom_group_id="etFixtureGroup")
    vip = await Tag.create(group=group, name="VIP", wecom_tag_id="etFixtureVip")
    await Tag.create(group=group, name="高意向", wecom_tag_id="etFixtureHot")

    counts = await wecom_sync.sync_customers(services, page_size=1)
    # wmCust1 (zhangsan), wmCust2 (zhangsan, lisi), wmCust3 (lisi)
    assert (counts.staff, counts.relations, counts.created, counts.members) == (2, 4, 4, 3)
    corp = _corp(services)
    ident = await Identity.get(kind=EXTERNAL, app=corp, value="wmCust1")
    assert ident.member_id == oa.id  # type: ignore[attr-defined]
    rel = await StaffCustomer.get(staff_userid="zhangsan", external_userid="wmCust1")
    assert (rel.status, rel.state, rel.remark) == ("active", "store-001", "王小明")
    assert await CustomerTag.filter(relation=rel).values_list("tag_id", flat=True) == [vip.id]
    # etFixtureNew is not in the local library: no CustomerTag for it
    lisi = await StaffCustomer.get(staff_userid="lisi", external_userid="wmCust2")
    assert await CustomerTag.filter(relation=lisi).count() == 0
    # wmCust2 is one member across both staff members; wmCust3 a new member
    cust2 = await StaffCustomer.filter(external_userid="wmCust2").values_list(
        "member_id", flat=True
    )
    assert len(set(cust2)) == 1
    assert await Member.all().count() == 3

    before = await _snapshot()
    again = await wecom_sync.sync_customers(services)
    assert (again.relations, again.created, again.updated) == (4, 0, 0)
    assert await _snapshot() == before


async def test_sync_customers_follows_tag_and_remark_changes(
    services: Services, fake: FakeServer
) -> None:
    group = await TagGroup.create(name="客户等级", source="sync", wecom_group_id="etFixtureGroup")
    await Tag.create(group=group, name="VIP", wecom_tag_id="etFixtureVip")
    hot = await Tag.create(group=group, name="高意向", wecom_tag_id="etFixtureHot")
    await wecom_sync.sync_customers(services)
    follow = fake.platform.corp().customers["wmCust1"].follows["zhangsan"]
    follow.tags, follow.remark = ["etFixtureHot"], "王先生"
    counts = await wecom_sync.sync_customers(services)
    assert (counts.created, counts.updated) == (0, 1)
    rel = await StaffCustomer.get(staff_userid="zhangsan", external_userid="wmCust1")
    assert rel.remark == "王先生"
    assert await CustomerTag.filter(relation=rel).values_list("tag_id", flat=True) == [hot.id]


async def test_contact_way_create_stores_and_audits(services: Services) -> None:
    config_id, qr = await wecom_handover.create_contact_way(
        services, "store-009", ["zhangsan", "lisi"], "ops"
    )
    assert qr.endswith(config_id)
    row = await ContactWay.get(config_id=config_id)
    assert (row.state, row.staff, row.qr_code, row.created_by) == (
        "store-009",
        ["zhangsan", "lisi"],
        qr,
        "ops",
    )
    audit = await AuditLog.get(action="wecom.contact_way.create")
    assert (audit.actor, audit.detail["state"]) == ("ops", "store-009")


async def test_transfer_success_and_refusal(services: Services, fake: FakeServer) -> None:
    await wecom_sync.sync_customers(services)
    fake.platform.corp().transfer_outcomes["wmCust2"] = 3  # this customer refuses
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        fake.platform.advance(43_200)  # half the 24 h takeover per poll

    counts = await wecom_handover.transfer_customers(
        services, "zhangsan", "lisi", actor="ops", sleep=sleep, interval=5
    )
    assert (counts.requested, counts.rejected, counts.success, counts.failed) == (2, 0, 1, 1)
    assert counts.reasons == {"customer refused": 1}
    assert slept == [5, 5]
    moved = await StaffCustomer.get(staff_userid="zhangsan", external_userid="wmCust1")
    assert (moved.status, moved.ended_by, moved.transfer_status) == ("ended", "transfer", "success")
    taken = await StaffCustomer.get(staff_userid="lisi", external_userid="wmCust1")
    assert taken.status == "active"
    assert taken.remark == moved.remark
    assert taken.member_id == moved.member_id  # type: ignore[attr-defined]
    assert (
        await CustomerTag.filter(relation=taken).count()
        == await CustomerTag.filter(relation=moved).count()
    )
    kept = await StaffCustomer.get(staff_userid="zhangsan", external_userid="wmCust2")
    assert (kept.status, kept.transfer_status, kept.transfer_note) == (
        "active",
        "failed",
        "customer refused",
    )
    rows = {r.external_userid: r for r in await CustomerTransfer.all()}
    assert (rows["wmCust1"].status, rows["wmCust2"].status) == ("success", "failed")
    assert rows["wmCust2"].reason == "customer refused"
    assert await AuditLog.filter(action="wecom.transfer").count() == 1
    # the platform agrees: wmCust1 now follows lisi only
    assert set(fake.platform.corp().customers["wmCust1"].follows) == {"lisi"}


async def test_a_rerun_while_waiting_asks_again_for_nobody(
    services: Services, fake: FakeServer
) -> None:
    await wecom_sync.sync_customers(services)

    async def sleep(seconds: float) -> None:
        fake.platform.advance(86_400)

    first = await wecom_handover.transfer_customers(
        services, "zhangsan", "lisi", sleep=sleep, max_polls=0
    )
    assert (first.requested, first.polls) == (2, 0)
    assert await CustomerTransfer.filter(status="waiting").count() == 2
    again = await wecom_handover.transfer_customers(services, "zhangsan", "lisi", sleep=sleep)
    assert (again.requested, again.success, again.polls) == (0, 2, 1)
    assert await CustomerTransfer.all().count() == 2
    assert await StaffCustomer.filter(staff_userid="lisi", status="active").count() == 3


async def test_transfer_of_a_customer_not_on_the_platform_fails_at_once(
    services: Services, wall: FakeWall
) -> None:
    now = datetime.fromtimestamp(wall.now, UTC)
    member = await Member.create(code="GHOST001", created_at=now, last_active_at=now)
    await StaffCustomer.create(
        corp=_corp(services), staff_userid="zhangsan", external_userid="wmGhost",
        member=member, added_at=now, created_at=now, updated_at=now,
    )  # fmt: skip

    async def sleep(seconds: float) -> None:
        raise AssertionError("nothing is waiting: no poll")

    counts = await wecom_handover.transfer_customers(services, "zhangsan", "lisi", sleep=sleep)
    assert (counts.requested, counts.rejected) == (0, 1)
    row = await CustomerTransfer.get()
    assert (row.status, row.errcode) == ("failed", 84061)


async def test_staff_report_figures(services: Services, wall: FakeWall) -> None:
    tz = services.clock.tz
    today = services.clock.today()
    corp = _corp(services)

    def at(days_ago: int, hour: int) -> datetime:
        day = today - timedelta(days=days_ago)
        return datetime(day.year, day.month, day.day, hour, tzinfo=tz)

    member = await Member.create(code="REPORT01", created_at=at(9, 1), last_active_at=at(9, 1))
    seeds = [
        ("zhangsan", "e1", at(9, 10), None, ""),  # before the window, still active
        ("zhangsan", "e2", at(2, 10), None, ""),  # added two days ago
        ("zhangsan", "e3", at(2, 11), at(1, 9), "staff"),  # added, then deleted by staff
        ("lisi", "e4", at(8, 10), at(0, 8), "customer"),  # the customer left today
        ("lisi", "e5", at(1, 12), at(1, 13), "transfer"),  # handed over: not a removal
    ]
    for staff, ext, added, ended, by in seeds:
        await StaffCustomer.create(
            corp=corp, staff_userid=staff, external_userid=ext, member=member, added_at=added,
            ended_at=ended, ended_by=by, status="ended" if ended else "active",
            created_at=added, updated_at=added,
        )  # fmt: skip
    await StaffCustomer.create(
        corp=corp, staff_userid="lisi", external_userid="e6", member=member, added_at=at(1, 8),
        status="pending", created_at=at(1, 8), updated_at=at(1, 8),
    )  # fmt: skip
    await CustomerTransfer.create(
        handover_userid="zhangsan", takeover_userid="lisi", external_userid="e1",
        status="failed", reason="customer refused", created_at=at(3, 9), updated_at=at(1, 9),
    )  # fmt: skip

    rows = await wecom_handover.staff_report(services, days=3)
    got = {(today - r.day).days for r in rows}
    figures = {
        ((today - r.day).days, r.staff): (
            r.customers, r.adds, r.removed_by_staff, r.removed_by_customer, r.failed_transfers
        )
        for r in rows
    }  # fmt: skip
    assert set(got) == {0, 1, 2}
    assert figures[(2, "zhangsan")] == (3, 2, 0, 0, 0)
    assert figures[(1, "zhangsan")] == (2, 0, 1, 0, 1)
    assert figures[(0, "zhangsan")] == (2, 0, 0, 0, 0)
    assert figures[(2, "lisi")] == (1, 0, 0, 0, 0)
    assert figures[(1, "lisi")] == (1, 1, 0, 0, 0)
    assert figures[(0, "lisi")] == (0, 0, 0, 1, 0)


async def test_sync_customers_links_a_member_the_event_left_without_its_unionid(
    services: Services, wall: FakeWall
) -> None:
    """The add event recorded wmCust1 as a member of its own, but its contact fetch never
    ran (the process died): the sync merges it into the OA member holding the unionid."""
    now = datetime.fromtimestamp(wall.now, UTC)
    oa = await Member.create(code="OAMEMBER", created_at=now, last_active_at=now)
    await Identity.create(kind="unionid", app="", value="uUnion1", member=oa, created_at=now)
    early = await Member.create(code="WECOM001", created_at=now)
    corp = _corp(services)
    await Identity.create(kind=EXTERNAL, app=corp, value="wmCust1", member=early, created_at=now)

    await wecom_sync.sync_customers(services)
    ident = await Identity.get(kind=EXTERNAL, app=corp, value="wmCust1")
    assert ident.member_id == oa.id  # type: ignore[attr-defined]
    assert (await Member.get(id=early.id)).status == "merged"
    relation = await StaffCustomer.get(staff_userid="zhangsan", external_userid="wmCust1")
    assert relation.member_id == oa.id  # type: ignore[attr-defined]
