"""OA mass send (群发) by tag or by openid list, and the MASSSENDJOBFINISH event.

https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Batch_Sends_and_Originality_Checks.html
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.devtools.fake.common import Body, FakeError, Json, Route, china_day, china_month
from bot.devtools.fake.oa_messages import describe, new_msg_id
from bot.devtools.fake.state import MassJob, OAAccount, OAUser
from bot.replies import cdata

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform

MIN_OPENIDS, MAX_OPENIDS = 2, 10_000  # per mass/send call
SERVICE_MONTHLY = 4  # a service account reaches each member 4 times a calendar month
SUBSCRIPTION_DAILY = 1  # a subscription account sends one mass job a day
CLIENTMSGID_TTL = 86_400  # the same clientmsgid within 24 h is refused (45065)


def sendall(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/message/mass/sendall: to everyone or to one tag (verified accounts)."""
    account, body = p.account_of(req), req.body
    if not account.verified:
        raise FakeError(48001, "api unauthorized")
    target = body.child("filter")
    if target.data.get("is_to_all"):
        members = list(account.users.values())
    else:
        tag_id = target.num("tag_id")
        if tag_id not in account.tags:
            raise FakeError(45159, "invalid tag id")
        members = [u for u in account.users.values() if tag_id in u.tags]
    return _submit(p, account, body, [u.openid for u in members if u.subscribe])


def send(p: FakePlatform, req: ApiRequest) -> Json:
    """POST cgi-bin/message/mass/send: 2–10,000 openids (verified service accounts only)."""
    account, body = p.account_of(req), req.body
    if not account.is_verified_service:
        raise FakeError(48001, "api unauthorized")
    openids = body.strs("touser")
    if not MIN_OPENIDS <= len(openids) <= MAX_OPENIDS:
        raise FakeError(40130, "invalid openid list size, at least two openid")
    return _submit(p, account, body, openids)


def _submit(p: FakePlatform, account: OAAccount, body: Body, openids: list[str]) -> Json:
    now = p.now()
    clientmsgid = body.text("clientmsgid")
    earlier = _earlier_job(p, account, clientmsgid, now)
    if earlier is not None:
        raise FakeError(45065, "clientmsgid exist", msg_id=earlier)
    msgtype = body.need("msgtype")
    text = describe(account, msgtype, body.child(msgtype), now)
    _count_daily(account, now)
    requested = list(dict.fromkeys(openids))
    reached = _reachable(account, requested, now)
    job = MassJob(new_msg_id(p), new_msg_id(p), account.appid, clientmsgid, now, len(requested), [])
    for user in reached:
        month = china_month(now)
        user.mass_by_month[month] = user.mass_by_month.get(month, 0) + 1
        p.deliver(user.openid, "mass", text, msg_id=job.msg_id, appid=account.appid)
        job.recipients.append(user.openid)
    p.world.mass_jobs[job.msg_id] = job
    if clientmsgid:
        account.clientmsgids[clientmsgid] = job.msg_id
    return {
        "errcode": 0,
        "errmsg": "send job submission success",
        "msg_id": job.msg_id,
        "msg_data_id": job.msg_data_id,
    }


def _earlier_job(p: FakePlatform, account: OAAccount, clientmsgid: str, now: float) -> int | None:
    msg_id = account.clientmsgids.get(clientmsgid) if clientmsgid else None
    job = p.world.mass_jobs.get(msg_id) if msg_id is not None else None
    return job.msg_id if job is not None and now - job.created_at < CLIENTMSGID_TTL else None


def _count_daily(account: OAAccount, now: float) -> None:
    if account.type == "service":
        return
    day = china_day(now)
    if account.mass_by_day.get(day, 0) >= SUBSCRIPTION_DAILY:
        raise FakeError(45028, "has no masssend quota")
    account.mass_by_day[day] = account.mass_by_day.get(day, 0) + 1


def _reachable(account: OAAccount, openids: list[str], now: float) -> list[OAUser]:
    """Followers who may still receive a mass message this month (others are filtered)."""
    month = china_month(now)
    users = [account.users.get(openid) for openid in openids]
    return [
        u
        for u in users
        if u is not None
        and u.subscribe
        and (account.type != "service" or u.mass_by_month.get(month, 0) < SERVICE_MONTHLY)
    ]


def finish_xml(p: FakePlatform, msg_id: int) -> str:
    """The plaintext MASSSENDJOBFINISH event for a job (KeyError if unknown).

    TotalCount: members targeted; FilterCount: left after filtering (the monthly cap,
    unfollowed) = SentCount + ErrorCount, as the official event defines them.
    """
    job = p.world.mass_jobs[msg_id]
    fields = (
        ("ToUserName", cdata("gh_" + job.appid)),
        ("FromUserName", cdata("mphelper")),  # the mass-send assistant, per the docs
        ("CreateTime", str(int(p.now()))),
        ("MsgType", cdata("event")),
        ("Event", cdata("MASSSENDJOBFINISH")),
        ("MsgID", str(job.msg_id)),
        ("Status", cdata("send success")),
        ("TotalCount", str(job.total)),
        ("FilterCount", str(job.filter_count)),
        ("SentCount", str(len(job.recipients))),
        ("ErrorCount", str(job.errors)),
    )
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in fields)
    copyright_check = (
        "<CopyrightCheckResult><Count>0</Count><ResultList></ResultList>"
        "<CheckState>1</CheckState></CopyrightCheckResult>"
    )
    return f"<xml>{inner}{copyright_check}</xml>"


ROUTES = {
    ("oa", "cgi-bin/message/mass/sendall"): Route(sendall),
    ("oa", "cgi-bin/message/mass/send"): Route(send),
}
