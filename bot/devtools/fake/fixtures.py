"""Fixture data every fake platform starts with (and gets back on reset).

Per account: followers oUser1..oUser3 (unionids uUnion1..uUnion3). WeCom: staff zhangsan
and lisi, one tag group with three tags, three customers (two share unionids with the
followers, so members can be bound across platforms), and one customer group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.devtools.fake.wecom_state import (
    CorpState,
    CorpTag,
    GroupChat,
    GroupMember,
    Staff,
    TagGroup,
)

if TYPE_CHECKING:
    from bot.devtools.fake.platform import FakePlatform

USERS = (
    ("oUser1", "uUnion1", "小明"),
    ("oUser2", "uUnion2", "小红"),
    ("oUser3", "uUnion3", "小刚"),
)
STAFF = (("zhangsan", "张三"), ("lisi", "李四"))
TAG_GROUP = ("etFixtureGroup", "客户等级")
TAGS = (("etFixtureVip", "VIP"), ("etFixtureHot", "高意向"), ("etFixtureNew", "新客"))
FollowSeed = tuple[str, tuple[str, ...], str]  # staff userid, tag ids, state
CUSTOMERS: tuple[tuple[str, str, str, tuple[FollowSeed, ...]], ...] = (
    ("wmCust1", "王小明", "uUnion1", (("zhangsan", ("etFixtureVip",), "store-001"),)),
    (
        "wmCust2",
        "李小红",
        "uUnion2",
        (("zhangsan", ("etFixtureHot",), ""), ("lisi", ("etFixtureNew",), "")),
    ),
    ("wmCust3", "赵客户", "", (("lisi", (), "poster-2"),)),
)
GROUP_CHAT = "wrFixtureGroup1"


def seed(p: FakePlatform) -> None:
    """Add the fixture data to every registered account and corp."""
    day_ago = int(p.now()) - 86_400
    for appid in p.world.accounts:
        for openid, unionid, nickname in USERS:
            p.add_user(appid, openid, unionid, nickname).subscribe_time = day_ago
    for corp in p.world.corps.values():
        _seed_corp(p, corp, day_ago)


def _seed_corp(p: FakePlatform, corp: CorpState, at: int) -> None:
    corp.staff.update({userid: Staff(userid, name) for userid, name in STAFF})
    group = TagGroup(TAG_GROUP[0], TAG_GROUP[1], at)
    group.tags = [CorpTag(tag_id, name, at, order) for order, (tag_id, name) in enumerate(TAGS)]
    corp.tag_groups.append(group)
    for ext, name, unionid, follows in CUSTOMERS:
        follow_user = [
            {"userid": u, "tags": list(tags), "state": state, "createtime": at, "remark": name}
            for u, tags, state in follows
        ]
        p.add_customer(ext, name, unionid, follow_user, corp_id=corp.corp_id)
    chat = GroupChat(GROUP_CHAT, "会员福利群", "zhangsan", at, notice="欢迎加入会员福利群")
    chat.members = [
        GroupMember("zhangsan", 1, at, join_scene=1, name="张三"),
        GroupMember("wmCust1", 2, at, 3, "zhangsan", "uUnion1", "王小明"),
        GroupMember("wmCust2", 2, at, 3, "zhangsan", "uUnion2", "李小红"),
    ]
    chat.admins = ["zhangsan"]
    corp.group_chats[chat.chat_id] = chat
