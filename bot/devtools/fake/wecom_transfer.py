"""WeCom customer handover (在职/离职继承): the takeover happens 24 h after the request.

In service: https://developer.work.weixin.qq.com/document/path/92125
Resigned staff: https://developer.work.weixin.qq.com/document/path/92124
transfer_result: https://developer.work.weixin.qq.com/document/path/94088
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.devtools.fake.common import FakeError, Json, Route, page, wecom_bad
from bot.devtools.fake.wecom_state import CorpState, Transfer

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

TAKEOVER_AFTER = 86_400  # the customer is taken over automatically after 24 h
MAX_PER_CALL = 100
DONE, WAITING = 1, 2  # transfer_result status


def transfer(p: FakePlatform, req: ApiRequest) -> Json:
    """POST transfer_customer (or resigned/…): per-customer errcodes, 0 when accepted."""
    corp, body = p.corp_of(req), req.body
    handover, takeover = body.need("handover_userid"), body.need("takeover_userid")
    if handover == takeover:
        raise wecom_bad("handover and takeover are the same staff member")
    if takeover not in corp.staff:
        raise FakeError(60111, "userid not found")
    ids = body.strs("external_userid")
    if not 0 < len(ids) <= MAX_PER_CALL:
        raise wecom_bad("external_userid must hold 1..100 ids")
    results = [
        {"external_userid": ext, "errcode": _start(corp, handover, takeover, ext, p.now())}
        for ext in ids
    ]
    return {"errcode": 0, "errmsg": "ok", "customer": results}


def _start(corp: CorpState, handover: str, takeover: str, ext: str, now: float) -> int:
    if corp.follow(handover, ext) is None:
        return 84061  # not this staff member's customer
    pending = any(
        t.external_userid == ext and t.handover == handover and not t.done for t in corp.transfers
    )
    if not pending:
        corp.transfers.append(Transfer(handover, takeover, ext, now))
    return 0


def settle_transfers(corp: CorpState, now: float) -> None:
    """Complete every handover whose 24 h have passed (the relation moves, tags and all)."""
    for item in corp.transfers:
        if item.done or now < item.created_at + TAKEOVER_AFTER:
            continue
        item.done = True
        item.result = corp.transfer_outcomes.pop(item.external_userid, DONE)
        if item.result != DONE:
            continue  # refused, or the takeover is full: the customer stays
        customer = corp.customers.get(item.external_userid)
        old = customer.follows.pop(item.handover, None) if customer is not None else None
        if customer is None or old is None or item.takeover in customer.follows:
            continue
        at = int(item.created_at + TAKEOVER_AFTER)
        moved = replace(old, userid=item.takeover, createtime=at, oper_userid=item.takeover)
        customer.follows[item.takeover] = moved


def transfer_result(p: FakePlatform, req: ApiRequest) -> Json:
    """POST transfer_result: status 1 taken over, 2 waiting (with the takeover time), 3 the
    customer refused, 4 the takeover staff member has too many customers."""
    corp, body = p.corp_of(req), req.body
    handover, takeover = body.need("handover_userid"), body.need("takeover_userid")
    rows = [t for t in corp.transfers if (t.handover, t.takeover) == (handover, takeover)]
    chunk, cursor = page(rows, body.text("cursor"), 1000, 40058)
    customers = [
        {
            "external_userid": t.external_userid,
            "status": t.result if t.done else WAITING,
            "takeover_time": int(t.created_at + TAKEOVER_AFTER),
        }
        for t in chunk
    ]
    return {"errcode": 0, "errmsg": "ok", "customer": customers, "next_cursor": cursor}


_CONTACT = "cgi-bin/externalcontact/"
ROUTES = {
    ("wecom", _CONTACT + "transfer_customer"): Route(transfer, scope="contact"),
    ("wecom", _CONTACT + "resigned/transfer_customer"): Route(transfer, scope="contact"),
    ("wecom", _CONTACT + "transfer_result"): Route(transfer_result, scope="contact"),
}
