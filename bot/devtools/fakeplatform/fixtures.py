"""Fixture staff, customers, corp tags and a customer group for the fake WeCom."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.devtools.fakeplatform.state import Customer, Follow

if TYPE_CHECKING:
    from bot.devtools.fakeplatform.platform import FakePlatform


def add_wecom_fixtures(platform: FakePlatform) -> None:
    """Two staff members, three customers with follow info, one tag group, one group chat."""
    from bot.devtools.fakeplatform.platform import TagGroup

    now = int(platform.now())
    platform.staff = ["zhangsan", "lisi"]
    group = TagGroup("etGROUP1", "客户等级", 1, {"etTAG1": "潜在客户", "etTAG2": "高价值"}, now)
    group2 = TagGroup("etGROUP2", "兴趣", 2, {"etTAG3": "护肤", "etTAG4": "彩妆"}, now)
    platform.tag_groups = {group.group_id: group, group2.group_id: group2}
    for i, (name, staff) in enumerate(
        (("王女士", "zhangsan"), ("李先生", "zhangsan"), ("陈小姐", "lisi")), 1
    ):
        ext = f"wmCustomer{i}"
        customer = Customer(ext, name, f"uUnion{i}")
        customer.follow[staff] = Follow(staff, f"{name}备注", "", 1, ["etTAG1"], now)
        platform.customers[ext] = customer
    platform.extra["group_chats"] = {
        "wrChat1": {
            "chat_id": "wrChat1",
            "name": "会员福利群",
            "owner": "zhangsan",
            "create_time": now,
            "notice": "欢迎加入",
            "member_list": [
                {"userid": "zhangsan", "type": 1, "join_time": now, "join_scene": 1},
                {
                    "userid": "wmCustomer1",
                    "type": 2,
                    "join_time": now,
                    "join_scene": 3,
                    "unionid": "uUnion1",
                    "invitor": {"userid": "zhangsan"},
                },
            ],
            "admin_list": [],
            "member_version": "v1",
            "status": 0,
        }
    }
