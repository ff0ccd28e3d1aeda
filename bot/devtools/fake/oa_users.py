"""OA followers and user tags.

User info: https://developers.weixin.qq.com/doc/offiaccount/User_Management/Get_users_basic_information_UnionID.html
Tags: https://developers.weixin.qq.com/doc/offiaccount/User_Management/User_Tag_Management.html
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.devtools.fake.common import OK, FakeError, Json, Route
from bot.devtools.fake.state import OAAccount, OAUser

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

MAX_TAGS = 100  # per account
MAX_TAGS_PER_USER = 20
MAX_TAG_NAME = 30
MAX_TAGGING_BATCH = 50


def put_user(
    p: FakePlatform, appid: str, openid: str, unionid: str, nickname: str, subscribe: int
) -> OAUser:
    """Add a follower, or update one (keeping its windows, tags and counters)."""
    account = p.world.accounts[appid]
    user = account.users.get(openid)
    if user is None:
        user = account.users[openid] = OAUser(openid, subscribe_time=int(p.now()))
    user.unionid = unionid or user.unionid
    user.nickname = nickname or user.nickname
    user.subscribe = subscribe
    return user


def known_user(account: OAAccount, openid: str) -> OAUser:
    """The follower, or 40003 for an openid this account never saw."""
    user = account.users.get(openid)
    if user is None:
        raise FakeError(40003, "invalid openid")
    return user


def user_info(p: FakePlatform, req: ApiRequest) -> Json:
    """GET cgi-bin/user/info."""
    user = known_user(p.account_of(req), req.query.get("openid", ""))
    if not user.subscribe:
        return {"subscribe": 0, "openid": user.openid, "unionid": user.unionid, "tagid_list": []}
    return {
        "subscribe": 1,
        "openid": user.openid,
        "nickname": user.nickname,
        "language": req.query.get("lang", "zh_CN"),
        "subscribe_time": user.subscribe_time,
        "unionid": user.unionid,
        "remark": "",
        "groupid": 0,
        "tagid_list": list(user.tags),
        "subscribe_scene": user.subscribe_scene,
        "qr_scene": user.qr_scene,
        "qr_scene_str": user.qr_scene_str,
    }


def tags_get(p: FakePlatform, req: ApiRequest) -> Json:
    """GET cgi-bin/tags/get → every tag with its member count."""
    account = p.account_of(req)
    counts = dict.fromkeys(account.tags, 0)
    for user in account.users.values():
        for tag_id in user.tags:
            counts[tag_id] = counts.get(tag_id, 0) + 1
    return {
        "tags": [
            {"id": tag_id, "name": name, "count": counts[tag_id]}
            for tag_id, name in account.tags.items()
        ]
    }


def tags_create(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/tags/create {"tag": {"name"}} → {"tag": {"id", "name"}}."""
    account = p.account_of(req)
    name = req.body.child("tag").need("name")
    if len(name) > MAX_TAG_NAME:
        raise FakeError(45158, "tag name too long")
    if name in account.tags.values():
        raise FakeError(45157, "invalid tag name")  # the name is taken
    if len(account.tags) >= MAX_TAGS:
        raise FakeError(45056, "too many tags")
    tag_id = account.next_tag_id
    account.next_tag_id += 1
    account.tags[tag_id] = name
    return {"tag": {"id": tag_id, "name": name}}


def _batch(p: FakePlatform, req: ApiRequest) -> tuple[int, list[OAUser]]:
    account = p.account_of(req)
    body = req.body
    tag_id = body.num("tagid")
    if tag_id not in account.tags:
        raise FakeError(45159, "invalid tag id")
    openids = body.strs("openid_list")
    if not openids or len(openids) > MAX_TAGGING_BATCH:
        raise FakeError(40032, "invalid openid list size")
    return tag_id, [known_user(account, openid) for openid in openids]


def batch_tagging(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/tags/members/batchtagging (≤ 50 openids; ≤ 20 tags per user)."""
    tag_id, users = _batch(p, req)
    if any(tag_id not in u.tags and len(u.tags) >= MAX_TAGS_PER_USER for u in users):
        raise FakeError(45059, "user has too many tags")
    for user in users:
        if tag_id not in user.tags:
            user.tags.append(tag_id)
    return dict(OK)


def batch_untagging(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/tags/members/batchuntagging."""
    tag_id, users = _batch(p, req)
    for user in users:
        if tag_id in user.tags:
            user.tags.remove(tag_id)
    return dict(OK)


def tags_of_user(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/tags/getidlist {"openid"} → {"tagid_list"}."""
    user = known_user(p.account_of(req), req.body.need("openid"))
    return {"tagid_list": list(user.tags)}


ROUTES = {
    ("oa", "cgi-bin/user/info"): Route(user_info, method="GET"),
    ("oa", "cgi-bin/tags/get"): Route(tags_get, method="GET"),
    ("oa", "cgi-bin/tags/create"): Route(tags_create),
    ("oa", "cgi-bin/tags/members/batchtagging"): Route(batch_tagging),
    ("oa", "cgi-bin/tags/members/batchuntagging"): Route(batch_untagging),
    ("oa", "cgi-bin/tags/getidlist"): Route(tags_of_user),
}
