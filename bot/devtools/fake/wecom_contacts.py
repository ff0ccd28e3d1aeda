"""WeCom customers (客户), their follow relations, and WelcomeCodes.

get: https://developer.work.weixin.qq.com/document/path/92114
list: https://developer.work.weixin.qq.com/document/path/92113
batch/get_by_user: https://developer.work.weixin.qq.com/document/path/92994
send_welcome_msg: https://developer.work.weixin.qq.com/document/path/92137
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bot.devtools.fake.common import OK, Body, FakeError, Json, Route, page, wecom_bad
from bot.devtools.fake.wecom_state import CorpState, Customer, Follow, WelcomeCode

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

WELCOME_TTL = 20  # a WelcomeCode is valid 20 s after the add event, once
BATCH_MAX_USERS, BATCH_MAX_LIMIT, BATCH_DEFAULT_LIMIT = 100, 100, 50
MAX_ATTACHMENTS = 9


def put_customer(
    p: FakePlatform,
    corp: CorpState,
    external_userid: str,
    name: str,
    unionid: str,
    follow_user: Iterable[Mapping[str, Any]],
) -> Customer:
    """Add or replace a customer and its relations (tags as tag ids; counters kept)."""
    old = corp.customers.get(external_userid)
    customer = Customer(external_userid, name, unionid)
    if old is not None:
        customer.received = old.received
    for item in follow_user:
        follow = _follow(corp, Body(item, 40058), int(p.now()))
        customer.follows[follow.userid] = follow
    corp.customers[external_userid] = customer
    return customer


def _follow(corp: CorpState, item: Body, now: int) -> Follow:
    userid = item.need("userid")
    if userid not in corp.staff:
        raise ValueError(f"unknown staff userid {userid!r}")
    tags = item.strs("tags")
    if any(corp.find_tag(t) is None for t in tags):
        raise ValueError(f"unknown corp tag in {tags}")
    return Follow(
        userid,
        remark=item.text("remark"),
        description=item.text("description"),
        state=item.text("state"),
        add_way=item.num("add_way", 1),
        createtime=item.num("createtime", now),
        oper_userid=userid,
        tags=tags,
    )


def mint_welcome_code(p: FakePlatform, corp: CorpState, userid: str, external_userid: str) -> str:
    """A WelcomeCode for a new relation (created here if the customer or relation is new)."""
    if userid not in corp.staff:
        raise ValueError(f"unknown staff userid {userid!r}")
    customer = corp.customers.get(external_userid)
    if customer is None:
        name = "客户" + external_userid[-4:]
        customer = corp.customers[external_userid] = Customer(external_userid, name)
    if userid not in customer.follows:
        customer.follows[userid] = Follow(userid, createtime=int(p.now()), oper_userid=userid)
    code = secrets.token_urlsafe(24)
    corp.welcome_codes[code] = WelcomeCode(code, userid, external_userid, p.now())
    return code


def contact_json(customer: Customer) -> Json:
    """The ``external_contact`` object."""
    contact: Json = {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "type": 1,
        "avatar": customer.avatar,
        "gender": customer.gender,
    }
    if customer.unionid:  # only when the customer's WeChat is bound to the corp's platform
        contact["unionid"] = customer.unionid
    return contact


def follow_json(corp: CorpState, follow: Follow) -> Json:
    """One ``follow_user`` entry of externalcontact/get."""
    tags = [corp.find_tag(t) for t in follow.tags]
    return {
        "userid": follow.userid,
        "remark": follow.remark,
        "description": follow.description,
        "createtime": follow.createtime,
        "tags": [
            {"group_name": g.group_name, "tag_name": t.name, "tag_id": t.id, "type": 1}
            for g, t in (found for found in tags if found is not None)
        ],
        "state": follow.state,
        "add_way": follow.add_way,
        "oper_userid": follow.oper_userid,
    }


def get(p: FakePlatform, req: ApiRequest) -> Json:
    """GET externalcontact/get; 84061 when no staff member has this customer."""
    corp = p.corp_of(req)
    customer = corp.customers.get(req.query.get("external_userid", ""))
    if customer is None or not customer.follows:
        raise FakeError(84061, "not external contact")
    return {
        "errcode": 0,
        "errmsg": "ok",
        "external_contact": contact_json(customer),
        "follow_user": [follow_json(corp, f) for f in customer.follows.values()],
    }


def list_ids(p: FakePlatform, req: ApiRequest) -> Json:
    """GET externalcontact/list; a staff member without customers answers 84061 (as WeCom does)."""
    corp, userid = p.corp_of(req), req.query.get("userid", "")
    if userid not in corp.staff:
        raise FakeError(60111, "userid not found")
    ids = [c.external_userid for c in corp.customers.values() if userid in c.follows]
    if not ids:
        raise FakeError(84061, "not external contact", external_userid=[])
    return {"errcode": 0, "errmsg": "ok", "external_userid": ids}


def follow_users(p: FakePlatform, req: ApiRequest) -> Json:
    """GET externalcontact/get_follow_user_list: staff with customer-contact permission."""
    return {"errcode": 0, "errmsg": "ok", "follow_user": list(p.corp_of(req).staff)}


def batch_by_user(p: FakePlatform, req: ApiRequest) -> Json:
    """POST externalcontact/batch/get_by_user: cursor pages of (customer, follow_info)."""
    corp, body = p.corp_of(req), req.body
    userids = body.strs("userid_list")
    if not 0 < len(userids) <= BATCH_MAX_USERS:
        raise wecom_bad("userid_list must hold 1..100 userids")
    limit = body.num("limit", BATCH_DEFAULT_LIMIT)
    if limit <= 0:
        raise wecom_bad("limit must be positive")
    customers = sorted(corp.customers.values(), key=_created)
    rows = [(c, c.follows[u]) for u in userids for c in customers if u in c.follows]
    chunk, cursor = page(rows, body.text("cursor"), min(limit, BATCH_MAX_LIMIT), 40058)
    return {
        "errcode": 0,
        "errmsg": "ok",
        "external_contact_list": [
            {"external_contact": contact_json(c), "follow_info": _follow_info(f)} for c, f in chunk
        ],
        "next_cursor": cursor,
    }


def _created(customer: Customer) -> tuple[int, str]:
    first = min((f.createtime for f in customer.follows.values()), default=0)
    return first, customer.external_userid


def _follow_info(follow: Follow) -> Json:
    return {
        "userid": follow.userid,
        "remark": follow.remark,
        "description": follow.description,
        "createtime": follow.createtime,
        "tag_id": list(follow.tags),
        "state": follow.state,
        "oper_userid": follow.oper_userid,
        "add_way": follow.add_way,
    }


def send_welcome(p: FakePlatform, req: ApiRequest) -> Json:
    """POST externalcontact/send_welcome_msg: once per WelcomeCode, within 20 s."""
    corp, body = p.corp_of(req), req.body
    code = corp.welcome_codes.get(body.text("welcome_code"))
    if code is not None and code.used:
        raise FakeError(41051, "externaluser has started chatting")
    if code is None or p.now() - code.issued_at >= WELCOME_TTL:
        raise FakeError(41096, "invalid welcome_code")
    text, attachments = body.child("text").text("content"), body.seq("attachments")
    if not text and not attachments:
        raise wecom_bad("text and attachments are both empty")
    if len(attachments) > MAX_ATTACHMENTS:
        raise wecom_bad("at most 9 attachments")
    code.used = True
    summary = text or f"[{len(attachments)} attachments]"
    p.deliver(code.external_userid, "welcome", summary, via=code.userid, attachments=attachments)
    return dict(OK)


_CONTACT = "cgi-bin/externalcontact/"
ROUTES = {
    ("wecom", _CONTACT + "get"): Route(get, method="GET", scope="contact"),
    ("wecom", _CONTACT + "list"): Route(list_ids, method="GET", scope="contact"),
    ("wecom", _CONTACT + "get_follow_user_list"): Route(
        follow_users, method="GET", scope="contact"
    ),
    ("wecom", _CONTACT + "batch/get_by_user"): Route(batch_by_user, scope="contact"),
    ("wecom", _CONTACT + "send_welcome_msg"): Route(send_welcome, scope="contact"),
}
