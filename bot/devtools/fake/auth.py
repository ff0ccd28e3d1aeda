"""The two token endpoints: OA ``cgi-bin/token`` and WeCom ``cgi-bin/gettoken``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.devtools.fake.common import FakeError, Json, Route
from bot.devtools.fake.tokens import TOKEN_TTL

if TYPE_CHECKING:
    from bot.devtools.fake.common import ApiRequest
    from bot.devtools.fake.platform import FakePlatform


def oa_token(p: FakePlatform, req: ApiRequest) -> Json:
    """GET cgi-bin/token: appid + secret → a 7200 s token (the previous one lives 5 min more).

    https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html
    """
    q = req.query
    if q.get("grant_type") != "client_credential":
        raise FakeError(40002, "invalid grant_type")
    appid, secret = q.get("appid", ""), q.get("secret", "")
    if not appid:
        raise FakeError(41002, "appid missing")
    account = p.world.accounts.get(appid)
    if account is None:
        raise FakeError(40013, "invalid appid")
    if not secret:
        raise FakeError(41004, "appsecret missing")
    if secret != account.secret:
        raise FakeError(40125, "invalid appsecret")
    token = p.tokens.issue("oa", appid, secret, frozenset({"oa"}), p.now())
    return {"access_token": token.value, "expires_in": TOKEN_TTL}


def wecom_token(p: FakePlatform, req: ApiRequest) -> Json:
    """GET cgi-bin/gettoken: per (corp, secret); the agent and contact secrets differ.

    https://developer.work.weixin.qq.com/document/path/91039
    """
    corp_id, secret = req.query.get("corpid", ""), req.query.get("corpsecret", "")
    if not corp_id:
        raise FakeError(41002, "corpid missing")
    corp = p.world.corps.get(corp_id)
    if corp is None:
        raise FakeError(40013, "invalid corpid")
    if not secret:
        raise FakeError(41004, "corpsecret missing")
    scopes = frozenset(
        scope
        for scope, value in (("agent", corp.agent_secret), ("contact", corp.contact_secret))
        if value == secret
    )
    if not scopes:
        raise FakeError(40001, "invalid secret")  # WeCom: a bad secret, not a bad token
    token = p.tokens.issue("wecom", corp_id, secret, scopes, p.now())
    return {"errcode": 0, "errmsg": "ok", "access_token": token.value, "expires_in": TOKEN_TTL}


ROUTES = {
    ("oa", "cgi-bin/token"): Route(oa_token, method="GET", token=False),
    ("wecom", "cgi-bin/gettoken"): Route(wecom_token, method="GET", token=False),
}
