"""Corp tags, staff tagging and chat-ops through the encrypted WeCom endpoint, against the
fake platform (which records add_corp_tag / mark_tag)."""

from __future__ import annotations

from typing import Any

from bot.config_program import SecuritySettings
from bot.services import wecom_tags
from bot.services.pii import MobileVault
from storage.models import AuditLog, CustomerTag, Member, Staff, Tag, TagGroup
from tests.conftest import AppMaker, FakeServer, api_headers
from tests.fakes import FakeWall
from tests.wecom_staff_support import (
    HMAC_KEY,
    MOBILE_KEY,
    customer,
    post_event,
    say,
    staff_settings,
    tag_event,
)


def _library(fake: FakeServer, groups: dict[str, list[str]]) -> None:
    from bot.devtools.fake.wecom_state import CorpTag
    from bot.devtools.fake.wecom_state import TagGroup as FakeGroup

    corp = fake.platform.corp()
    corp.tag_groups = []
    for gi, (name, tags) in enumerate(groups.items()):
        group = FakeGroup(f"grp{gi}", name, 1, order=gi)
        group.tags = [CorpTag(f"tag{gi}{ti}", t, 1, order=ti) for ti, t in enumerate(tags)]
        corp.tag_groups.append(group)


def _calls(fake: FakeServer, api: str) -> list[Any]:
    return [c.body for c in fake.platform.calls("wecom", f"cgi-bin/externalcontact/{api}")]


async def test_roster_seeded_on_start_and_removed_staff_go_inactive(
    make_client: AppMaker, database: str, fake: FakeServer
) -> None:
    await Staff.create(userid="gone", role="manager")
    await make_client(staff_settings(database, fake))
    rows = {s.userid: (s.role, s.active) for s in await Staff.all()}
    assert rows == {
        "zhangsan": ("staff", True),
        "boss": ("manager", True),
        "gone": ("manager", False),
    }
    await make_client(staff_settings(database, fake, [{"userid": "zhangsan", "role": "manager"}]))
    rows = {s.userid: (s.role, s.active) for s in await Staff.all()}
    assert rows["zhangsan"] == ("manager", True)
    assert rows["boss"] == ("manager", False)


async def test_tag_events_keep_the_library(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    settings = staff_settings(database, fake)
    client = await make_client(settings)
    _library(fake, {"客户等级": ["VIP", "普通"], "来源": ["门店"]})
    await post_event(client, settings, tag_event("create", "tag00"), wall.now)
    tags = {t.wecom_tag_id: (t.name, t.sort_order, t.deleted) for t in await Tag.all()}
    assert tags == {
        "tag00": ("VIP", 0, False),
        "tag01": ("普通", 1, False),
        "tag10": ("门店", 0, False),
    }
    corp = fake.platform.corp()
    corp.tag_groups[0].tags[0].name = "VIP客户"
    corp.tag_groups[0].tags.reverse()
    corp.tag_groups[0].tags[0].order, corp.tag_groups[0].tags[1].order = 0, 1
    await post_event(client, settings, tag_event("update", "tag00"), wall.now)
    await post_event(client, settings, tag_event("shuffle", "grp0", ""), wall.now)
    corp.tag_groups.pop(1)
    await post_event(client, settings, tag_event("delete", "grp1", "tag_group"), wall.now)
    tags = {t.wecom_tag_id: (t.name, t.sort_order, t.deleted) for t in await Tag.all()}
    assert tags == {
        "tag00": ("VIP客户", 1, False),
        "tag01": ("普通", 0, False),
        "tag10": ("门店", 0, True),
    }
    groups = {g.wecom_group_id: (g.name, g.deleted) for g in await TagGroup.all()}
    assert groups == {"grp0": ("客户等级", False), "grp1": ("来源", True)}


async def test_sync_tags_idempotent_both_ways(
    database: str, fake: FakeServer, services: Any
) -> None:
    _library(fake, {"客户等级": ["VIP"]})
    api = services.clients.wecom().tags
    first = await wecom_tags.sync_tags(api)
    again = await wecom_tags.sync_tags(api)
    assert (first.tags, again.tags, again.deleted) == (1, 1, 0)
    assert await Tag.all().count() == 1
    assert await TagGroup.all().count() == 1
    made = await wecom_tags.ensure_tags(api, ["新客", "VIP"], "SCRM")
    same = await wecom_tags.ensure_tags(api, ["新客", "VIP"], "SCRM")
    assert [t.id for t in made] == [t.id for t in same]
    assert [c["tag"] for c in _calls(fake, "add_corp_tag")] == [[{"name": "新客"}]]
    await wecom_tags.sync_tags(api)
    assert await Tag.filter(deleted=False).count() == 2
    assert await Tag.all().count() == 2


async def test_staff_tags_a_customer_end_to_end(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    settings = staff_settings(database, fake)
    client = await make_client(settings)
    _library(fake, {"客户等级": ["潜在客户"]})
    member, rel = await customer(fake, "K7Q2M9XA", "wmEXT1", remark="王女士")
    await post_event(client, settings, tag_event("create", "tag00"), wall.now)
    potential = await Tag.get(wecom_tag_id="tag00")
    await CustomerTag.create(
        relation=rel, tag=potential, source="sync", created_at=member.created_at
    )
    reply = await say(client, settings, "标签 王女士 +VIP -潜在客户", "zhangsan", wall.now)
    assert "王女士" in reply
    assert "VIP" in reply
    assert "潜在客户" not in reply
    added = _calls(fake, "add_corp_tag")
    assert added == [{"tag": [{"name": "VIP"}], "group_name": "SCRM"}]
    vip = await Tag.get(name="VIP")
    marks = _calls(fake, "mark_tag")
    assert marks == [
        {
            "userid": "zhangsan",
            "external_userid": "wmEXT1",
            "add_tag": [vip.wecom_tag_id],
            "remove_tag": ["tag00"],
        }
    ]
    assert fake.platform.corp().follow("zhangsan", "wmEXT1").tags == [vip.wecom_tag_id]  # type: ignore[union-attr]
    rows = await CustomerTag.filter(relation=rel).prefetch_related("tag")
    assert [(r.tag.name, r.source, r.set_by) for r in rows] == [("VIP", "staff", "zhangsan")]
    # By member code, again: nothing new in WeCom's library.
    reply = await say(client, settings, "标签 K7Q2M9XA +VIP", "zhangsan", wall.now)
    assert "VIP" in reply
    assert len(_calls(fake, "add_corp_tag")) == 1


async def test_customer_by_mobile_and_ambiguous_and_none(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    settings = staff_settings(database, fake)
    client = await make_client(settings)
    vault = MobileVault.from_settings(
        SecuritySettings(mobile_key=MOBILE_KEY, mobile_hmac_key=HMAC_KEY)
    )
    await customer(fake, "AAAA1111", "wmA", remark="王女士")
    await customer(fake, "BBBB2222", "wmB", remark="王女士")
    member, _ = await customer(fake, "CCCC3333", "wmC", remark="李先生")
    await Member.filter(id=member.id).update(
        mobile_cipher=vault.encrypt("13800138000"), mobile_hash=vault.lookup_hash("13800138000")
    )
    reply = await say(client, settings, "标签 王女士 +VIP", "zhangsan", wall.now)
    assert "AAAA1111" in reply
    assert "BBBB2222" in reply
    assert "多位客户" in reply
    assert _calls(fake, "mark_tag") == []
    reply = await say(client, settings, "标签 nobody +VIP", "zhangsan", wall.now)
    assert "没有找到" in reply
    reply = await say(client, settings, "标签 13800138000 +VIP", "zhangsan", wall.now)
    assert "CCCC3333" in reply
    assert "VIP" in reply
    assert [m["external_userid"] for m in _calls(fake, "mark_tag")] == ["wmC"]


async def test_unregistered_or_inactive_staff_refused(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    settings = staff_settings(database, fake)
    client = await make_client(settings)
    await customer(fake, "AAAA1111", "wmA", staff="boss", remark="王女士")
    await Staff.filter(userid="boss").update(active=False)
    for userid in ("stranger", "boss"):
        reply = await say(client, settings, "标签 王女士 +VIP", userid, wall.now)
        assert "无法使用" in reply
    assert _calls(fake, "mark_tag") == []
    assert _calls(fake, "add_corp_tag") == []


async def test_lookup_and_points_by_role(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    settings = staff_settings(database, fake)
    client = await make_client(settings)
    member, _ = await customer(fake, "AAAA1111", "wmA", remark="王女士", tier="silver")
    reply = await say(client, settings, "查 王女士", "zhangsan", wall.now)
    assert "等级：银卡" in reply
    assert "积分：0" in reply
    assert "zhangsan" in reply
    reply = await say(client, settings, "加积分 AAAA1111 50 到店补录", "zhangsan", wall.now)
    assert "角色不能使用" in reply
    assert (await Member.get(id=member.id)).points_balance == 0
    reply = await say(client, settings, "加积分 AAAA1111 50 到店补录", "boss", wall.now)
    assert "50" in reply
    assert (await Member.get(id=member.id)).points_balance == 50
    audit = await AuditLog.filter(action="points.adjust").get()
    assert audit.actor == "staff:boss"
    assert audit.target == f"member:{member.id}"
    reply = await say(client, settings, "查 AAAA1111", "boss", wall.now)
    assert "积分：50" in reply


async def test_api_tags_with_and_without_relations(
    make_client: AppMaker, database: str, fake: FakeServer, wall: FakeWall
) -> None:
    settings = staff_settings(database, fake)
    client = await make_client(settings)
    member, _ = await customer(fake, "AAAA1111", "wmA", remark="王女士")
    await customer(fake, "AAAA1111", "wmA", staff="boss", remark="王")
    lonely = await Member.create(code="LONE0001", created_at=member.created_at)
    body = {"add": ["VIP"], "remove": []}
    resp = await client.post(
        "/api/members/AAAA1111/tags", json=body, headers=api_headers("integration")
    )
    assert resp.status == 403
    resp = await client.post("/api/members/AAAA1111/tags", json=body, headers=api_headers("staff"))
    assert resp.status == 200
    out = await resp.json()
    assert out["relations"] == 2
    assert sorted(t["staff"] for t in out["tags"]) == ["boss", "zhangsan"]
    assert {t["set_by"] for t in out["tags"]} == {"token:test-staff"}
    assert sorted(m["userid"] for m in _calls(fake, "mark_tag")) == ["boss", "zhangsan"]
    resp = await client.post(
        "/api/members/LONE0001/tags", json=body, headers=api_headers("manager")
    )
    out = await resp.json()
    assert (out["relations"], [(t["name"], t["source"]) for t in out["tags"]]) == (
        0,
        [("VIP", "local")],
    )
    assert len(_calls(fake, "mark_tag")) == 2
    assert len(_calls(fake, "add_corp_tag")) == 1
    resp = await client.get("/api/members/LONE0001/tags", headers=api_headers("staff"))
    assert [t["name"] for t in (await resp.json())["tags"]] == ["VIP"]
    remove = {"add": [], "remove": ["VIP"]}
    resp = await client.post(
        "/api/members/LONE0001/tags", json=remove, headers=api_headers("staff")
    )
    assert (await resp.json())["tags"] == []
    audits = await AuditLog.filter(action="member.tags").order_by("id")
    assert [a.target for a in audits] == [
        f"member:{member.id}",
        f"member:{lonely.id}",
        f"member:{lonely.id}",
    ]
    resp = await client.get("/api/members/NOPE0000/tags", headers=api_headers("staff"))
    assert resp.status == 404
    resp = await client.post("/api/members/AAAA1111/tags", json={}, headers=api_headers("staff"))
    assert (await resp.json())["error"] == "bad_tags"
