"""Fake WeCom corp tags, group-send tasks and customer handover.

Group-send tasks: https://developer.work.weixin.qq.com/document/path/92135 — staff must
confirm a task before it is sent; customers over the per-customer cap are refused.
"""

from __future__ import annotations

import secrets
from typing import Any

from bot.devtools.fakeplatform.platform import FakePlatform, TagGroup
from bot.devtools.fakeplatform.state import FakeError, Follow
from bot.devtools.fakeplatform.types import ApiRequest, Route

GROUP_MSGS_PER_CUSTOMER_PER_DAY = 1


def _group_json(group: TagGroup) -> dict[str, Any]:
    return {
        "group_id": group.group_id,
        "group_name": group.name,
        "create_time": group.created,
        "order": group.order,
        "tag": [
            {"id": t, "name": n, "create_time": group.created, "order": i}
            for i, (t, n) in enumerate(group.tags.items())
        ],
    }


def corp_tag_list(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST get_corp_tag_list (optionally filtered by tag or group ids)."""
    tag_ids = set(req.body.get("tag_id", []))
    group_ids = set(req.body.get("group_id", []))
    groups = []
    for group in fake.tag_groups.values():
        if group_ids and group.group_id not in group_ids:
            continue
        data = _group_json(group)
        if tag_ids:
            data["tag"] = [t for t in data["tag"] if t["id"] in tag_ids]
            if not data["tag"]:
                continue
        groups.append(data)
    return {"tag_group": groups}


def add_corp_tag(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST add_corp_tag (into a group by id, or a new group by name)."""
    group_id = str(req.body.get("group_id", ""))
    if group_id:
        group = fake.tag_groups.get(group_id)
        if group is None:
            raise FakeError(40071, "invalid group id")
    else:
        name = str(req.body.get("group_name", ""))
        if not name:
            raise FakeError(40058, "group_name required")
        group = TagGroup(f"etG{secrets.token_hex(4)}", name, len(fake.tag_groups) + 1)
        group.created = int(fake.now())
        fake.tag_groups[group.group_id] = group
    for tag in req.body.get("tag", []):
        if tag.get("name") in group.tags.values():
            raise FakeError(40071, "tag name duplicated")
        group.tags[f"etT{secrets.token_hex(4)}"] = str(tag.get("name", ""))
    return {"tag_group": _group_json(group)}


def mark_tag(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST mark_tag: tags are per staff–customer relation."""
    follow = fake.follow(str(req.body.get("userid", "")), str(req.body.get("external_userid", "")))
    add = [str(t) for t in req.body.get("add_tag", [])]
    remove = [str(t) for t in req.body.get("remove_tag", [])]
    if not add and not remove:
        raise FakeError(40058, "add_tag and remove_tag are empty")
    if any(t not in fake.tag_ids() for t in add + remove):
        raise FakeError(40068, "invalid tagid")
    follow.tags = [t for t in follow.tags if t not in remove]
    follow.tags += [t for t in add if t not in follow.tags]
    return {}


def _tasks(fake: FakePlatform) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = fake.extra.setdefault("group_msgs", {})
    return tasks


def add_msg_template(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST add_msg_template: a task the sender must confirm; capped customers fail."""
    sender = str(req.body.get("sender", ""))
    if sender not in fake.staff:
        raise FakeError(60111, "invalid userid")
    status: dict[str, int] = {}
    fail: list[str] = []
    for ext in req.body.get("external_userid", []):
        customer = fake.customers.get(str(ext))
        if customer is None or sender not in customer.follow:
            status[str(ext)] = 2
            fail.append(str(ext))
        elif customer.group_msgs_by_day.get(fake.day(), 0) >= GROUP_MSGS_PER_CUSTOMER_PER_DAY:
            status[str(ext)] = 3
            fail.append(str(ext))
        else:
            customer.group_msgs_by_day[fake.day()] = (
                customer.group_msgs_by_day.get(fake.day(), 0) + 1
            )
            status[str(ext)] = 0
    msgid = f"msg{secrets.token_hex(8)}"
    text = str(req.body.get("text", {}).get("content", ""))
    _tasks(fake)[msgid] = {"sender": sender, "status": status, "text": text, "sent_at": 0}
    return {"fail_list": fail, "msgid": msgid}


def confirm_group_msg(fake: FakePlatform, msgid: str, userid: str) -> int:
    """The staff member confirmed the task: pending customers get it (control API)."""
    task = _tasks(fake).get(msgid)
    if task is None or task["sender"] != userid:
        raise FakeError(41063, "invalid msgid")
    sent = 0
    for ext, state in task["status"].items():
        if state == 0:
            task["status"][ext] = 1
            fake.deliver(ext, "企业群发", task["text"], userid=userid)
            sent += 1
    task["sent_at"] = int(fake.now())
    return sent


def groupmsg_send_result(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST get_groupmsg_send_result (status 0 until confirmed, then 1)."""
    task = _tasks(fake).get(str(req.body.get("msgid", "")))
    if task is None or task["sender"] != req.body.get("userid"):
        raise FakeError(41063, "invalid msgid")
    rows = [
        {
            "external_userid": ext,
            "chat_id": "",
            "userid": task["sender"],
            "status": st,
            "send_time": task["sent_at"] if st == 1 else 0,
        }
        for ext, st in task["status"].items()
    ]
    limit = int(req.body.get("limit", 1000))
    start = int(req.body.get("cursor") or 0)
    nxt = start + limit
    return {"send_list": rows[start:nxt], "next_cursor": str(nxt) if nxt < len(rows) else ""}


def _transfer(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    handover, takeover = str(req.body.get("handover_userid")), str(req.body.get("takeover_userid"))
    if handover not in fake.staff or takeover not in fake.staff:
        raise FakeError(60111, "invalid userid")
    results = []
    log: list[dict[str, Any]] = fake.extra.setdefault("transfers", [])
    for ext in req.body.get("external_userid", []):
        customer = fake.customers.get(str(ext))
        if customer is None or handover not in customer.follow:
            results.append({"external_userid": ext, "errcode": 84061})
            continue
        old = customer.follow.pop(handover)
        customer.follow[takeover] = Follow(
            takeover, old.remark, old.state, old.add_way, old.tags, int(fake.now())
        )
        log.append(
            {
                "handover": handover,
                "takeover": takeover,
                "external_userid": ext,
                "at": int(fake.now()),
            }
        )
        results.append({"external_userid": ext, "errcode": 0})
    return {"customer": results}


def transfer_customer(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST transfer_customer (staff in service)."""
    return _transfer(fake, req)


def transfer_resigned(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST resigned/transfer_customer (staff who left)."""
    return _transfer(fake, req)


def transfer_result(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST transfer_result: status 1 (接替完毕) for completed handovers."""
    handover, takeover = req.body.get("handover_userid"), req.body.get("takeover_userid")
    log = [
        t
        for t in fake.extra.get("transfers", [])
        if t["handover"] == handover and t["takeover"] == takeover
    ]
    rows = [
        {"external_userid": t["external_userid"], "status": 1, "takeover_time": t["at"]}
        for t in log
    ]
    return {"customer": rows, "next_cursor": ""}


ROUTES = (
    Route("POST", "cgi-bin/externalcontact/get_corp_tag_list", corp_tag_list, auth="contact"),
    Route("POST", "cgi-bin/externalcontact/add_corp_tag", add_corp_tag, auth="contact"),
    Route("POST", "cgi-bin/externalcontact/mark_tag", mark_tag, auth="contact"),
    Route("POST", "cgi-bin/externalcontact/add_msg_template", add_msg_template, auth="contact"),
    Route(
        "POST",
        "cgi-bin/externalcontact/get_groupmsg_send_result",
        groupmsg_send_result,
        auth="contact",
    ),
    Route("POST", "cgi-bin/externalcontact/transfer_customer", transfer_customer, auth="contact"),
    Route(
        "POST",
        "cgi-bin/externalcontact/resigned/transfer_customer",
        transfer_resigned,
        auth="contact",
    ),
    Route("POST", "cgi-bin/externalcontact/transfer_result", transfer_result, auth="contact"),
)
