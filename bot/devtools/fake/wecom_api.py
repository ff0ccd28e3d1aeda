"""WeCom app messages to staff, and contact ways (渠道活码).

Agent messages: https://developer.work.weixin.qq.com/document/path/90236
Contact ways: https://developer.work.weixin.qq.com/document/path/92228
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from bot.devtools.fake.common import Body, FakeError, Json, Route, wecom_bad

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

MAX_STATE = 30


def message_send(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/message/send (agent token): deliver to staff; unknown ids are reported."""
    corp, body = p.corp_of(req), req.body
    if body.num("agentid") != corp.agent_id:
        raise FakeError(40056, "invalid agentid")
    msgtype = body.need("msgtype")
    text = _agent_text(msgtype, body.child(msgtype))
    touser = body.text("touser")
    targets = list(corp.staff) if touser == "@all" else [u for u in touser.split("|") if u]
    valid = [u for u in targets if u in corp.staff]
    if not valid:
        raise FakeError(81013, "user & party & tag all invalid")
    for userid in valid:
        p.deliver(userid, "agent", text, msgtype=msgtype)
    answer: Json = {"errcode": 0, "errmsg": "ok", "msgid": secrets.token_urlsafe(24)}
    invalid = [u for u in targets if u not in corp.staff]
    if invalid:
        answer["invaliduser"] = "|".join(invalid)
    return answer


def _agent_text(msgtype: str, part: Body) -> str:
    if msgtype in ("text", "markdown"):
        if not part.text("content"):
            raise wecom_bad("content is empty")
        return part.text("content")
    if msgtype == "textcard":
        return f"[textcard] {part.need('title')} {part.text('description')}".rstrip()
    if msgtype in ("news", "mpnews"):
        articles = part.seq("articles")
        if not articles:
            raise wecom_bad("articles is empty")
        return f"[{msgtype}] {Body(articles[0], 40058).text('title')}"
    if msgtype in ("image", "voice", "video", "file"):
        return f"[{msgtype}] {part.need('media_id')}"
    raise FakeError(40008, "invalid message type")


def add_contact_way(p: FakePlatform, req: ApiRequest) -> Json:
    """POST externalcontact/add_contact_way → {config_id, qr_code (scene 2)}."""
    corp, body = p.corp_of(req), req.body
    kind, scene, users = body.num("type"), body.num("scene"), body.strs("user")
    if kind not in (1, 2) or scene not in (1, 2):
        raise wecom_bad("type and scene must be 1 or 2")
    if not users or (kind == 1 and len(users) != 1):
        raise wecom_bad("user: a single contact way takes exactly one user")
    if any(u not in corp.staff for u in users):
        raise FakeError(60111, "userid not found")
    if len(body.text("state")) > MAX_STATE:
        raise wecom_bad("state is longer than 30 characters")
    config_id = secrets.token_hex(16)
    corp.contact_ways[config_id] = dict(body.data)
    answer: Json = {"errcode": 0, "errmsg": "ok", "config_id": config_id}
    if scene == 2:
        answer["qr_code"] = f"https://wework.qq.com/q/{config_id}"
    return answer


ROUTES = {
    ("wecom", "cgi-bin/message/send"): Route(message_send, scope="agent"),
    ("wecom", "cgi-bin/externalcontact/add_contact_way"): Route(add_contact_way, scope="contact"),
}
