"""Fake WeCom APIs: tokens per (corp, secret), the agent, customers and corp tags.

WelcomeCode rules: https://developer.work.weixin.qq.com/document/path/92137 (single use,
valid 20 s after the add event).
"""

from __future__ import annotations

import secrets
from typing import Any

from bot.devtools.fakeplatform.platform import FakePlatform
from bot.devtools.fakeplatform.state import Customer, FakeError, Follow
from bot.devtools.fakeplatform.types import ApiRequest, Route

WELCOME_CODE_TTL = 20.0


def gettoken(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """GET cgi-bin/gettoken: the agent and contact secrets give different tokens."""
    corp = fake.corp
    if corp is None or req.query.get("corpid") != corp.corp_id:
        raise FakeError(40013, "invalid corpid")
    secret = req.query.get("corpsecret", "")
    kinds = {corp.agent_secret: "agent", corp.contact_secret: "contact"}
    if not secret or secret not in kinds:
        raise FakeError(40001, "invalid credential")
    issued = fake.issue_token(("wecom", corp.corp_id, kinds[secret]))
    return {"access_token": issued.value, "expires_in": 7200}


def message_send(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST cgi-bin/message/send (agent text)."""
    body = req.body
    if fake.corp is None or int(body.get("agentid", 0)) != fake.corp.agent_id:
        raise FakeError(40056, "invalid agentid")
    text = str(body.get("text", {}).get("content", ""))
    if body.get("msgtype") != "text" or not text:
        raise FakeError(40008, "invalid message type")
    for userid in str(body.get("touser", "")).split("|"):
        fake.deliver(userid, "应用消息", text)
    return {"msgid": secrets.token_hex(8)}


def _contact_json(customer: Customer) -> dict[str, Any]:
    return {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "type": 1,
        "avatar": "",
        "gender": 0,
        "unionid": customer.unionid,
    }


def _follow_json(fake: FakePlatform, follow: Follow) -> dict[str, Any]:
    names = {t: (g.name, n) for g in fake.tag_groups.values() for t, n in g.tags.items()}
    return {
        "userid": follow.userid,
        "remark": follow.remark,
        "description": "",
        "createtime": follow.createtime,
        "tags": [
            {"group_name": names[t][0], "tag_name": names[t][1], "tag_id": t, "type": 1}
            for t in follow.tags
            if t in names
        ],
        "state": follow.state,
        "add_way": follow.add_way,
        "oper_userid": follow.userid,
    }


def contact_get(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """GET externalcontact/get."""
    customer = fake.customer(req.query.get("external_userid", ""))
    follows = [_follow_json(fake, f) for f in customer.follow.values()]
    return {"external_contact": _contact_json(customer), "follow_user": follows}


def contact_list(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """GET externalcontact/list."""
    userid = req.query.get("userid", "")
    if userid not in fake.staff:
        raise FakeError(60111, "invalid userid")
    ids = [c.external_userid for c in fake.customers.values() if userid in c.follow]
    return {"external_userid": ids}


def follow_users(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """GET externalcontact/get_follow_user_list."""
    return {"follow_user": list(fake.staff)}


def batch_by_user(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST externalcontact/batch/get_by_user with cursor paging (limit ≤ 100)."""
    userids = [str(u) for u in req.body.get("userid_list", [])]
    limit = int(req.body.get("limit", 50))
    if not userids or not 1 <= limit <= 100:
        raise FakeError(40058, "invalid parameter")
    rows = [
        (c, f)
        for c in sorted(fake.customers.values(), key=lambda c: c.external_userid)
        for f in c.follow.values()
        if f.userid in userids
    ]
    start = int(req.body.get("cursor") or 0)
    page = rows[start : start + limit]
    items = [
        {
            "external_contact": _contact_json(c),
            "follow_info": {**_follow_json(fake, f), "tag_id": list(f.tags)},
        }
        for c, f in page
    ]
    nxt = start + limit
    return {"external_contact_list": items, "next_cursor": str(nxt) if nxt < len(rows) else ""}


def send_welcome(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST externalcontact/send_welcome_msg: one use per code, within 20 s."""
    codes: dict[str, dict[str, Any]] = fake.extra.setdefault("welcome_codes", {})
    code = codes.get(str(req.body.get("welcome_code", "")))
    if code is None or fake.now() - code["at"] > WELCOME_CODE_TTL:
        raise FakeError(41096, "invalid welcome code")
    if code["used"]:
        raise FakeError(41051, "externaluser has started chatting")
    code["used"] = True
    text = str(req.body.get("text", {}).get("content", ""))
    fake.deliver(code["external_userid"], "欢迎语", text, userid=code["userid"])
    return {}


def mint_welcome_code(fake: FakePlatform, userid: str, external_userid: str) -> str:
    """A fresh WelcomeCode for an add_external_contact event (control API)."""
    code = secrets.token_urlsafe(16)
    codes: dict[str, dict[str, Any]] = fake.extra.setdefault("welcome_codes", {})
    codes[code] = {
        "userid": userid,
        "external_userid": external_userid,
        "at": fake.now(),
        "used": False,
    }
    return code


def _chats(fake: FakePlatform) -> dict[str, dict[str, Any]]:
    chats: dict[str, dict[str, Any]] = fake.extra.setdefault("group_chats", {})
    return chats


def groupchat_list(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST externalcontact/groupchat/list (cursor paging)."""
    owners = req.body.get("owner_filter", {}).get("userid_list", [])
    chats = [c for c in _chats(fake).values() if not owners or c["owner"] in owners]
    limit = int(req.body.get("limit", 100))
    start = int(req.body.get("cursor") or 0)
    page = chats[start : start + limit]
    nxt = start + limit
    return {
        "group_chat_list": [{"chat_id": c["chat_id"], "status": c["status"]} for c in page],
        "next_cursor": str(nxt) if nxt < len(chats) else "",
    }


def groupchat_get(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST externalcontact/groupchat/get."""
    chat = _chats(fake).get(str(req.body.get("chat_id", "")))
    if chat is None:
        raise FakeError(701008, "invalid chat_id")
    return {"group_chat": {k: v for k, v in chat.items() if k != "status"}}


def add_contact_way(fake: FakePlatform, req: ApiRequest) -> dict[str, Any]:
    """POST externalcontact/add_contact_way."""
    users = req.body.get("user", [])
    if not users or any(u not in fake.staff for u in users):
        raise FakeError(60111, "invalid userid")
    config_id = secrets.token_hex(16)
    ways: dict[str, Any] = fake.extra.setdefault("contact_ways", {})
    ways[config_id] = dict(req.body)
    return {"config_id": config_id, "qr_code": f"https://wework.qpic.cn/wwpic/{config_id}"}


ROUTES = (
    Route("GET", "cgi-bin/gettoken", gettoken, auth="none"),
    Route("POST", "cgi-bin/message/send", message_send, auth="agent"),
    Route("GET", "cgi-bin/externalcontact/get", contact_get, auth="contact"),
    Route("GET", "cgi-bin/externalcontact/list", contact_list, auth="contact"),
    Route("GET", "cgi-bin/externalcontact/get_follow_user_list", follow_users, auth="contact"),
    Route("POST", "cgi-bin/externalcontact/batch/get_by_user", batch_by_user, auth="contact"),
    Route("POST", "cgi-bin/externalcontact/send_welcome_msg", send_welcome, auth="contact"),
    Route("POST", "cgi-bin/externalcontact/groupchat/list", groupchat_list, auth="contact"),
    Route("POST", "cgi-bin/externalcontact/groupchat/get", groupchat_get, auth="contact"),
    Route("POST", "cgi-bin/externalcontact/add_contact_way", add_contact_way, auth="contact"),
)
