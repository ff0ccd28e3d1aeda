"""WeCom corp tags: the tag library and tagging customers (per staff–customer relation).

Library: https://developer.work.weixin.qq.com/document/path/92117
mark_tag: https://developer.work.weixin.qq.com/document/path/92118
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.devtools.fake.common import OK, Body, FakeError, Json, Route, wecom_bad
from bot.devtools.fake.wecom_state import CorpState, CorpTag, TagGroup

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

MAX_TAG_NAME = 30


def group_json(group: TagGroup, tags: list[CorpTag]) -> Json:
    """A ``tag_group`` object holding the given tags."""
    return {
        "group_id": group.group_id,
        "group_name": group.group_name,
        "create_time": group.create_time,
        "order": group.order,
        "deleted": False,
        "tag": [_tag_json(t) for t in tags],
    }


def _tag_json(tag: CorpTag) -> Json:
    return {
        "id": tag.id,
        "name": tag.name,
        "create_time": tag.create_time,
        "order": tag.order,
        "deleted": False,
    }


def tag_list(p: FakePlatform, req: ApiRequest) -> Json:
    """POST get_corp_tag_list: all, by group ids, or by tag ids (group ids win)."""
    corp, body = p.corp_of(req), req.body
    group_ids, tag_ids = body.strs("group_id"), body.strs("tag_id")
    if group_ids:
        views = [(g, g.tags) for g in corp.tag_groups if g.group_id in group_ids]
    elif tag_ids:
        views = [(g, [t for t in g.tags if t.id in tag_ids]) for g in corp.tag_groups]
    else:
        views = [(g, g.tags) for g in corp.tag_groups]
    groups = [group_json(g, tags) for g, tags in views if tags]
    return {"errcode": 0, "errmsg": "ok", "tag_group": groups}


def add_tag(p: FakePlatform, req: ApiRequest) -> Json:
    """POST add_corp_tag: into a group by id, or by name (a new group if the name is new)."""
    corp, body = p.corp_of(req), req.body
    group = _target_group(corp, body, int(p.now()))
    items = [Body(t, 40058) for t in body.seq("tag")]
    if not items:
        raise wecom_bad("tag is empty")
    names = [t.name for t in group.tags]
    new_tags = []
    for item in items:
        name = _tag_name(item.need("name"), names)
        names.append(name)
        new_tags.append(CorpTag(corp.new_id("etfaketag"), name, int(p.now()), item.num("order")))
    if group not in corp.tag_groups:
        corp.tag_groups.append(group)
    group.tags.extend(new_tags)
    return {"errcode": 0, "errmsg": "ok", "tag_group": group_json(group, new_tags)}


def _target_group(corp: CorpState, body: Body, now: int) -> TagGroup:
    group_id, name = body.text("group_id"), body.text("group_name")
    for group in corp.tag_groups:
        if (group_id and group.group_id == group_id) or (not group_id and group.group_name == name):
            return group
    if group_id:
        raise FakeError(40068, "invalid tagid")
    if not name:
        raise wecom_bad("group_id or group_name is required")
    return TagGroup(corp.new_id("etfakegrp"), name, now, body.num("order"))


def _tag_name(name: str, taken: list[str]) -> str:
    if len(name) > MAX_TAG_NAME:
        raise FakeError(40072, "invalid tag name size")
    if name in taken:
        raise FakeError(40071, "invalid tag name, tag name already exists")
    return name


def edit_tag(p: FakePlatform, req: ApiRequest) -> Json:
    """POST edit_corp_tag {"id", "name", "order"}: a tag or a group."""
    corp, body = p.corp_of(req), req.body
    item_id, name = body.need("id"), body.text("name")
    found = corp.find_tag(item_id)
    if found is not None:
        group, tag = found
        if name and name != tag.name:
            tag.name = _tag_name(name, [t.name for t in group.tags])
        tag.order = body.num("order", tag.order)
        return dict(OK)
    for group in corp.tag_groups:
        if group.group_id == item_id:
            group.group_name = name or group.group_name
            group.order = body.num("order", group.order)
            return dict(OK)
    raise FakeError(40068, "invalid tagid")


def del_tag(p: FakePlatform, req: ApiRequest) -> Json:
    """POST del_corp_tag: tags and/or whole groups; an emptied group goes too."""
    corp, body = p.corp_of(req), req.body
    tag_ids, group_ids = set(body.strs("tag_id")), set(body.strs("group_id"))
    if not tag_ids and not group_ids:
        raise wecom_bad("tag_id or group_id is required")
    known_groups = {g.group_id for g in corp.tag_groups}
    if any(corp.find_tag(t) is None for t in tag_ids) or not group_ids <= known_groups:
        raise FakeError(40068, "invalid tagid")
    for group in corp.tag_groups:
        if group.group_id in group_ids:
            tag_ids |= {t.id for t in group.tags}
        group.tags = [t for t in group.tags if t.id not in tag_ids]
    corp.tag_groups = [g for g in corp.tag_groups if g.tags]
    for customer in corp.customers.values():
        for follow in customer.follows.values():
            follow.tags = [t for t in follow.tags if t not in tag_ids]
    return dict(OK)


def mark_tag(p: FakePlatform, req: ApiRequest) -> Json:
    """POST mark_tag: tags belong to one staff member's relation with the customer."""
    corp, body = p.corp_of(req), req.body
    follow = corp.follow(body.need("userid"), body.need("external_userid"))
    if follow is None:
        raise FakeError(84061, "not external contact")
    add, remove = body.strs("add_tag"), body.strs("remove_tag")
    if not add and not remove:
        raise wecom_bad("add_tag and remove_tag are both empty")
    if any(corp.find_tag(t) is None for t in add + remove):
        raise FakeError(40068, "invalid tagid")
    follow.tags = [t for t in follow.tags if t not in remove]
    follow.tags += [t for t in dict.fromkeys(add) if t not in follow.tags]
    return dict(OK)


_CONTACT = "cgi-bin/externalcontact/"
ROUTES = {
    ("wecom", _CONTACT + "get_corp_tag_list"): Route(tag_list, scope="contact"),
    ("wecom", _CONTACT + "add_corp_tag"): Route(add_tag, scope="contact"),
    ("wecom", _CONTACT + "edit_corp_tag"): Route(edit_tag, scope="contact"),
    ("wecom", _CONTACT + "del_corp_tag"): Route(del_tag, scope="contact"),
    ("wecom", _CONTACT + "mark_tag"): Route(mark_tag, scope="contact"),
}
