"""change_external_chat through the encrypted WeCom endpoint, with the fake platform."""

from __future__ import annotations

from typing import Any

from bot.appkeys import RECORDER
from bot.config import Settings
from bot.devtools.fake.fixtures import GROUP_CHAT
from bot.devtools.fake.wecom_state import GroupMember as FakeMember
from storage.models import Identity, Member
from storage.models.wecom import CustomerGroup, GroupMember
from tests.conftest import AppMaker, FakeServer
from tests.fakes import FakeWall
from tests.helpers import post_wecom


def chat_event(change: str, at: int, extra: str = "", chat_id: str = GROUP_CHAT) -> str:
    """A change_external_chat event as WeCom sends it."""
    return (
        "<xml><ToUserName><![CDATA[corp]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_chat]]></Event>"
        f"<ChatId><![CDATA[{chat_id}]]></ChatId><ChangeType><![CDATA[{change}]]></ChangeType>"
        f"{extra}</xml>"
    )


def update_extra(detail: str, last: str, cur: str, items: tuple[str, ...], quit: int = 0) -> str:
    """The update event's fields."""
    scene = f"<QuitScene>{quit}</QuitScene>" if quit else "<JoinScene>1</JoinScene>"
    listed = "".join(f"<Item><![CDATA[{i}]]></Item>" for i in items)
    return (
        f"<UpdateDetail><![CDATA[{detail}]]></UpdateDetail>{scene}"
        f"<MemChangeCnt>{len(items)}</MemChangeCnt><MemChangeList>{listed}</MemChangeList>"
        f"<LastMemVer><![CDATA[{last}]]></LastMemVer><CurMemVer><![CDATA[{cur}]]></CurMemVer>"
    )


async def _post(client: Any, settings: Settings, text: str, wall: FakeWall) -> None:
    resp = await post_wecom(client, settings, text, timestamp=int(wall.now))
    assert resp.status == 200
    assert await resp.text() == "success"


async def _roster() -> dict[str, tuple[Any, ...]]:
    rows = await GroupMember.all().order_by("userid")
    return {r.userid: (r.type, r.join_scene, r.left_at, r.quit_scene, r.member_id) for r in rows}


async def _snapshot() -> tuple[Any, ...]:
    groups = await CustomerGroup.all().values()
    members = await GroupMember.all().order_by("id").values()
    return tuple(map(str, groups)), tuple(map(str, members))


async def test_create_update_dismiss_keep_the_roster(
    make_client: AppMaker, fake_settings: Settings, fake: FakeServer, wall: FakeWall
) -> None:
    now = wall.now
    member = await Member.create(code="GRP00001", created_at=_at(now), last_active_at=_at(now))
    corp = fake_settings.wecom.corp_id if fake_settings.wecom else ""
    await Identity.create(
        kind="wecom_external_userid", app=corp, value="wmCust1", member=member, created_at=_at(now)
    )
    client = await make_client(fake_settings)
    t = int(wall.now)
    await _post(client, fake_settings, chat_event("create", t), wall)
    group = await CustomerGroup.get(chat_id=GROUP_CHAT)
    assert (group.name, group.owner_userid, group.notice, group.status) == (
        "会员福利群",
        "zhangsan",
        "欢迎加入会员福利群",
        "active",
    )
    assert group.member_version == "1"
    roster = await _roster()
    assert set(roster) == {"zhangsan", "wmCust1", "wmCust2"}
    assert roster["wmCust1"][4] == member.id  # linked through the known external userid
    assert roster["wmCust2"][4] is None
    assert roster["wmCust1"][1] == 3
    assert roster["zhangsan"][0] == 1

    # a customer joins and another leaves: the fake changes, the events say so
    chat = fake.platform.corp().group_chats[GROUP_CHAT]
    chat.members.append(FakeMember("wmCust3", 2, t + 5, 1, "zhangsan", "", "赵客户"))
    chat.member_version = "2"
    add = update_extra("add_member", "1", "2", ("wmCust3",))
    await _post(client, fake_settings, chat_event("update", t + 5, add), wall)
    chat.members = [m for m in chat.members if m.userid != "wmCust2"]
    chat.member_version, chat.name, chat.notice, chat.owner = "3", "会员群", "新公告", "lisi"
    delete = update_extra("del_member", "2", "3", ("wmCust2",), quit=1)
    await _post(client, fake_settings, chat_event("update", t + 6, delete), wall)
    roster = await _roster()
    assert roster["wmCust3"][2] is None
    assert roster["wmCust3"][1] == 1
    assert roster["wmCust2"][2] is not None
    assert roster["wmCust2"][3] == 1
    assert roster["wmCust1"][2] is None
    group = await CustomerGroup.get(chat_id=GROUP_CHAT)
    assert (group.member_version, group.name, group.notice) == ("3", "会员群", "新公告")
    assert group.owner_userid == "lisi"

    # replays (WeCom retries, or an operator replay) change nothing more
    before = await _snapshot()
    wall.now += 30
    await _post(client, fake_settings, chat_event("update", t + 6, delete), wall)
    await _post(client, fake_settings, chat_event("update", t + 5, add), wall)
    await _post(client, fake_settings, chat_event("create", t), wall)
    assert await _snapshot() == before

    await _post(client, fake_settings, chat_event("dismiss", t + 9), wall)
    group = await CustomerGroup.get(chat_id=GROUP_CHAT)
    assert group.status == "dismissed"
    assert group.dismissed_at is not None
    dismissed = await _snapshot()
    await _post(client, fake_settings, chat_event("dismiss", t + 9), wall)
    assert await _snapshot() == dismissed
    await client.app[RECORDER].flush()


async def test_update_for_an_unknown_group_is_answered(
    make_client: AppMaker, fake_settings: Settings, fake: FakeServer, wall: FakeWall
) -> None:
    client = await make_client(fake_settings)
    extra = update_extra("add_member", "1", "2", ("wmX",))
    await _post(client, fake_settings, chat_event("update", int(wall.now), extra, "wrNone"), wall)
    assert await CustomerGroup.all().count() == 0


def _at(seconds: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)
