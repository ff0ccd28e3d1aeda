"""WeCom group-message tasks (企业群发) that staff confirm, and customer groups (客户群).

add_msg_template: https://developer.work.weixin.qq.com/document/path/92135
get_groupmsg_send_result: https://developer.work.weixin.qq.com/document/path/93338
groupchat/list and get: https://developer.work.weixin.qq.com/document/path/92120, 92122
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from bot.devtools.fake.common import (
    Body,
    FakeError,
    Json,
    Route,
    page,
    receive_period,
    wecom_bad,
)
from bot.devtools.fake.wecom_state import CorpState, GroupChat, GroupMember, GroupMsg, SendEntry

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

# send_list status: 0 not sent yet, 1 sent, 2 not a friend (customer) or not sendable
# (group), 3 the customer or group already received its group messages (the cap).
PENDING, SENT, NOT_FRIEND, CAPPED = 0, 1, 2, 3
MAX_CUSTOMERS, MAX_ATTACHMENTS = 10_000, 9
# chat_id_list: "最多可一次指定2000个客户群" (92135).
MAX_CHATS = 2000


def add_msg_template(p: FakePlatform, req: ApiRequest) -> Json:
    """POST add_msg_template: a task per staff member; capped customers go to fail_list."""
    corp, body = p.corp_of(req), req.body
    chat_type, sender = body.text("chat_type") or "single", body.text("sender")
    if chat_type not in ("single", "group"):
        raise wecom_bad("chat_type must be single or group")
    if sender and sender not in corp.staff:
        raise FakeError(60111, "userid not found")
    text, attachments = body.child("text").text("content"), body.seq("attachments")
    if not text and not attachments:
        raise wecom_bad("text and attachments are both empty")
    if len(attachments) > MAX_ATTACHMENTS:
        raise wecom_bad("at most 9 attachments")
    msg = GroupMsg("msg" + secrets.token_urlsafe(18), chat_type, sender, text, attachments, p.now())
    if chat_type == "single":
        _single_entries(corp, msg, body, p.now())
    else:
        _group_entries(corp, msg, body, p.now())
    corp.group_msgs[msg.msgid] = msg
    for userid in dict.fromkeys(e.userid for e in msg.entries if e.status == PENDING):
        p.deliver(userid, "groupmsg_task", f"[群发任务待确认] {text}", msgid=msg.msgid)
    # fail_list names customers only; a capped group shows as status 3 in the send result.
    failed = (NOT_FRIEND, CAPPED)
    fail_list = [e.external_userid for e in msg.entries if e.external_userid and e.status in failed]
    return {"errcode": 0, "errmsg": "ok", "fail_list": fail_list, "msgid": msg.msgid}


def _single_entries(corp: CorpState, msg: GroupMsg, body: Body, now: float) -> None:
    ids = body.strs("external_userid")
    if not ids and not msg.sender:
        raise wecom_bad("external_userid and sender are both empty")
    if len(ids) > MAX_CUSTOMERS:
        raise wecom_bad("at most 10,000 external_userid")
    if not ids:
        ids = [c.external_userid for c in corp.customers.values() if msg.sender in c.follows]
    period, cap = receive_period(now, corp.receive_rule)
    for ext in dict.fromkeys(ids):
        customer = corp.customers.get(ext)
        follows = customer.follows if customer is not None else {}
        userid = msg.sender or next(iter(follows), "")
        status = PENDING
        if customer is None or userid not in follows:
            status = NOT_FRIEND
        elif customer.received.get(period, 0) >= cap:
            status = CAPPED
        else:
            customer.received[period] = customer.received.get(period, 0) + 1
        msg.entries.append(SendEntry(ext, "", userid, status))


def _group_entries(corp: CorpState, msg: GroupMsg, body: Body, now: float) -> None:
    """Each chat gets an entry; a chat whose receive limit is used is capped at once."""
    if not msg.sender:
        raise wecom_bad("sender is required for chat_type group")
    chat_ids = body.strs("chat_id_list")
    if len(chat_ids) > MAX_CHATS:
        raise wecom_bad("at most 2,000 chat_id_list")
    owned = {c.chat_id: c for c in corp.group_chats.values() if c.owner == msg.sender}
    period, cap = receive_period(now, corp.receive_rule)
    for chat_id in dict.fromkeys(chat_ids or owned):
        chat = owned.get(chat_id)
        if chat is None:
            raise FakeError(40050, "chatid not exist")
        status = PENDING
        if chat.received.get(period, 0) >= cap:
            status = CAPPED
        else:
            chat.received[period] = chat.received.get(period, 0) + 1
        msg.entries.append(SendEntry("", chat_id, msg.sender, status))


def confirm(p: FakePlatform, corp: CorpState, msgid: str, userid: str) -> int:
    """Staff confirm their part of a task: pending recipients get it (KeyError if unknown)."""
    msg = corp.group_msgs[msgid]
    sent = 0
    for entry in msg.entries:
        if entry.userid != userid or entry.status != PENDING:
            continue
        if entry.external_userid and corp.follow(userid, entry.external_userid) is None:
            entry.status = NOT_FRIEND  # deleted since the task was created
            continue
        chat = corp.group_chats.get(entry.chat_id) if entry.chat_id else None
        if entry.chat_id and (chat is None or chat.owner != userid):
            entry.status = NOT_FRIEND  # dismissed, or handed to another owner, since
            continue
        entry.status, entry.send_time = SENT, int(p.now())
        to = entry.external_userid or entry.chat_id
        p.deliver(to, "groupmsg", msg.text or "[attachments]", via=userid, msgid=msgid)
        sent += 1
    return sent


def send_result(p: FakePlatform, req: ApiRequest) -> Json:
    """POST get_groupmsg_send_result: one staff member's recipients, cursor paged."""
    corp, body = p.corp_of(req), req.body
    msg = corp.group_msgs.get(body.need("msgid"))
    if msg is None:
        raise wecom_bad("invalid msgid")
    limit = body.num("limit", 500)
    if limit <= 0:
        raise wecom_bad("limit must be positive")
    rows = [e for e in msg.entries if e.userid == body.need("userid")]
    chunk, cursor = page(rows, body.text("cursor"), min(limit, 1000), 40058)
    sends = [e.as_json() for e in chunk]
    return {"errcode": 0, "errmsg": "ok", "send_list": sends, "next_cursor": cursor}


def chat_list(p: FakePlatform, req: ApiRequest) -> Json:
    """POST groupchat/list: filter by status (0: all) and owners; limit 1–1000."""
    corp, body = p.corp_of(req), req.body
    limit, status = body.num("limit"), body.num("status_filter")
    if not 1 <= limit <= 1000:
        raise wecom_bad("limit must be 1..1000")
    owners = body.child("owner_filter").strs("userid_list")
    chats = [
        c
        for c in corp.group_chats.values()
        if status in (0, c.status) and (not owners or c.owner in owners)
    ]
    chunk, cursor = page(chats, body.text("cursor"), limit, 40058)
    items = [{"chat_id": c.chat_id, "status": c.status} for c in chunk]
    return {"errcode": 0, "errmsg": "ok", "group_chat_list": items, "next_cursor": cursor}


def chat_get(p: FakePlatform, req: ApiRequest) -> Json:
    """POST groupchat/get: the group with its members (names when need_name=1)."""
    corp, body = p.corp_of(req), req.body
    chat = corp.group_chats.get(body.need("chat_id"))
    if chat is None:
        raise FakeError(40050, "chatid not exist")
    return {"errcode": 0, "errmsg": "ok", "group_chat": _chat_json(chat, body.num("need_name"))}


def _chat_json(chat: GroupChat, need_name: int) -> Json:
    return {
        "chat_id": chat.chat_id,
        "name": chat.name,
        "owner": chat.owner,
        "create_time": chat.create_time,
        "notice": chat.notice,
        "member_list": [_member_json(m, need_name) for m in chat.members],
        "admin_list": [{"userid": a} for a in chat.admins],
        "member_version": chat.member_version,
    }


def _member_json(member: GroupMember, need_name: int) -> Json:
    item: Json = {
        "userid": member.userid,
        "type": member.type,
        "join_time": member.join_time,
        "join_scene": member.join_scene,
        "group_nickname": "",
    }
    if member.invitor:
        item["invitor"] = {"userid": member.invitor}
    if member.type == 2 and member.unionid:
        item["unionid"] = member.unionid
    if need_name:
        item["name"] = member.name
    return item


_CONTACT = "cgi-bin/externalcontact/"
ROUTES = {
    ("wecom", _CONTACT + "add_msg_template"): Route(add_msg_template, scope="contact"),
    ("wecom", _CONTACT + "get_groupmsg_send_result"): Route(send_result, scope="contact"),
    ("wecom", _CONTACT + "groupchat/list"): Route(chat_list, scope="contact"),
    ("wecom", _CONTACT + "groupchat/get"): Route(chat_get, scope="contact"),
}
