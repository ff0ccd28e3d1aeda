"""The fake WeChat/WeCom platform (bot/devtools/fake) enforces every rule it fakes."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.config import Settings, settings_from_dict
from bot.devtools.fake import FakePlatform, create_fake_app, mount_fake_platform

Client = TestClient[Any, Any]
Json = dict[str, Any]
SERVICE, SERVICE_SECRET = "wxservice0000001", "service-secret"
SUBSCRIPTION, SUB_SECRET = "wxsubscription01", "sub-secret"
UNVERIFIED, UNVERIFIED_SECRET = "wxunverified0001", "unverified-secret"
CORP, AGENT_SECRET, CONTACT_SECRET, AGENT_ID = "wwfakecorp000001", "agent-s", "contact-s", 1000002
START = 1_700_000_000.0  # 2023-11-15 06:13:20 in Beijing
DAY = 86_400


def _account(appid: str, secret: str, kind: str, verified: bool) -> Json:
    return {
        "appid": appid,
        "secret": secret,
        "token": "tok",
        "mode": "plaintext",
        "type": kind,
        "verified": verified,
    }


def _settings() -> Settings:
    raw = {
        "accounts": {
            "brand": _account(SERVICE, SERVICE_SECRET, "service", True),
            "news": _account(SUBSCRIPTION, SUB_SECRET, "subscription", True),
            "draft": _account(UNVERIFIED, UNVERIFIED_SECRET, "service", False),
        },
        "wecom": {
            "corp_id": CORP,
            "agent_id": AGENT_ID,
            "agent_secret": AGENT_SECRET,
            "contact_secret": CONTACT_SECRET,
            "token": "wecomtok",
            "encoding_aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        },
    }
    return settings_from_dict(raw, {}, "fake-test.toml")


class Clock:
    """The fake's injected clock, moved by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move forward."""
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    """A clock that never moves on its own."""
    return Clock()


@pytest.fixture
def platform(clock: Clock) -> FakePlatform:
    """The fake built from settings, on the manual clock."""
    return FakePlatform.from_settings(_settings(), clock=clock)


@pytest.fixture
async def fake(aiohttp_client: Any, platform: FakePlatform) -> Client:
    """An HTTP client for the fake app."""
    client: Client = await aiohttp_client(create_fake_app(platform))
    return client


# --- request helpers ------------------------------------------------------------------


async def call(
    client: Client, path: str, body: Any = None, method: str = "", **params: Any
) -> Json:
    """One request (POST when there is a body) → the JSON answer."""
    verb = method or ("POST" if body is not None else "GET")
    query = {k: str(v) for k, v in params.items()}
    async with client.request(verb, path, params=query, json=body) as resp:
        data: Json = await resp.json()
        return data


async def oa(client: Client, api: str, body: Any = None, token: str = "", **params: Any) -> Json:
    """An OA API call with a token."""
    return await call(client, f"/oa/cgi-bin/{api}", body, access_token=token, **params)


async def wc(client: Client, api: str, body: Any = None, token: str = "", **params: Any) -> Json:
    """A WeCom API call with a token."""
    return await call(client, f"/wecom/cgi-bin/{api}", body, access_token=token, **params)


async def ec(client: Client, api: str, body: Any = None, token: str = "", **params: Any) -> Json:
    """A WeCom 客户联系 (externalcontact) call with a token."""
    return await wc(client, f"externalcontact/{api}", body, token, **params)


async def ctl(client: Client, name: str, body: Any = None, **params: Any) -> Json:
    """A control API call."""
    return await call(client, f"/_control/{name}", body, **params)


async def oa_token(client: Client, appid: str = SERVICE, secret: str = SERVICE_SECRET) -> str:
    """A fresh OA access_token."""
    params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    return str((await call(client, "/oa/cgi-bin/token", **params))["access_token"])


async def wecom_token(client: Client, secret: str = CONTACT_SECRET) -> str:
    """A fresh WeCom access_token for one secret."""
    answer = await call(client, "/wecom/cgi-bin/gettoken", corpid=CORP, corpsecret=secret)
    return str(answer["access_token"])


async def custom(client: Client, token: str, openid: str = "oUser1") -> int:
    """Send one customer-service text → the errcode."""
    body = {"touser": openid, "msgtype": "text", "text": {"content": "hi"}}
    return int((await oa(client, "message/custom/send", body, token))["errcode"])


def template_to(openid: str) -> Json:
    """A template-message body."""
    return {"touser": openid, "template_id": "TPL1", "url": "", "data": {"k": {"value": "v"}}}


def mass_to(openids: list[str], clientmsgid: str) -> Json:
    """A mass/send (openid list) body."""
    text = {"content": "sale"}
    return {"touser": openids, "msgtype": "text", "text": text, "clientmsgid": clientmsgid}


def code(answer: Json) -> int:
    """The errcode of an answer (0 when absent, as for user/info)."""
    return int(answer.get("errcode", 0))


# --- tokens ---------------------------------------------------------------------------


async def test_oa_token_lives_7200_seconds_and_is_counted(
    fake: Client, platform: FakePlatform, clock: Clock
) -> None:
    params = {"grant_type": "client_credential", "appid": SERVICE, "secret": SERVICE_SECRET}
    answer = await call(fake, "/oa/cgi-bin/token", **params)
    assert answer["expires_in"] == 7200
    assert platform.token_count("oa", SERVICE) == 1
    token = answer["access_token"]
    clock.advance(7199)
    assert (await oa(fake, "user/info", token=token, openid="oUser1"))["unionid"] == "uUnion1"
    clock.advance(1)
    assert code(await oa(fake, "user/info", token=token, openid="oUser1")) == 42001


async def test_new_oa_token_retires_the_old_one_after_5_minutes(fake: Client, clock: Clock) -> None:
    old = await oa_token(fake)
    clock.advance(1000)
    new = await oa_token(fake)
    clock.advance(299)
    assert code(await oa(fake, "tags/get", token=old)) == 0
    clock.advance(1)
    assert code(await oa(fake, "tags/get", token=old)) == 42001
    assert code(await oa(fake, "tags/get", token=new)) == 0


@pytest.mark.parametrize(
    ("appid", "secret", "errcode"),
    [("wxnobody", SERVICE_SECRET, 40013), (SERVICE, "wrong", 40125), (SERVICE, "", 41004)],
)
async def test_oa_token_rejects_wrong_credentials(
    fake: Client, appid: str, secret: str, errcode: int
) -> None:
    params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
    assert code(await call(fake, "/oa/cgi-bin/token", **params)) == errcode


async def test_oa_unknown_or_missing_token(fake: Client) -> None:
    assert code(await oa(fake, "tags/get", token="nope")) == 40001
    assert code(await call(fake, "/oa/cgi-bin/tags/get")) == 41001


async def test_wecom_token_codes(fake: Client) -> None:
    wrong_corp = await call(fake, "/wecom/cgi-bin/gettoken", corpid="ww0", corpsecret=AGENT_SECRET)
    assert code(wrong_corp) == 40013
    wrong_secret = await call(fake, "/wecom/cgi-bin/gettoken", corpid=CORP, corpsecret="x")
    assert code(wrong_secret) == 40001  # WeCom: 40001 is a bad secret
    assert code(await ec(fake, "get_follow_user_list", token="x")) == 40014


async def test_wecom_tokens_are_per_secret_and_scoped(fake: Client, platform: FakePlatform) -> None:
    agent, contact = await wecom_token(fake, AGENT_SECRET), await wecom_token(fake, CONTACT_SECRET)
    assert agent != contact
    assert code(await ec(fake, "get", token=agent, external_userid="wmCust1")) == 48002
    assert code(await ec(fake, "get", token=contact, external_userid="wmCust1")) == 0
    message = {"touser": "lisi", "msgtype": "text", "agentid": AGENT_ID, "text": {"content": "hi"}}
    assert code(await wc(fake, "message/send", message, contact)) == 48002
    assert code(await wc(fake, "message/send", message, agent)) == 0
    assert platform.token_count("wecom", CORP, AGENT_SECRET) == 1
    assert platform.token_count("wecom", CORP, CONTACT_SECRET) == 1


async def test_expire_tokens_control(fake: Client) -> None:
    oa_tok, wecom_tok = await oa_token(fake), await wecom_token(fake)
    assert (await ctl(fake, "expire_tokens", {}))["ok"]
    assert code(await oa(fake, "tags/get", token=oa_tok)) == 42001
    assert code(await ec(fake, "get_follow_user_list", token=wecom_tok)) == 42001


# --- customer-service windows ---------------------------------------------------------


async def test_five_messages_within_48h_of_a_member_message(
    fake: Client, platform: FakePlatform, clock: Clock
) -> None:
    await ctl(fake, "interaction", {"appid": SERVICE, "openid": "oUser1", "kind": "message"})
    clock.advance(47 * 3600)
    token = await oa_token(fake)
    assert [await custom(fake, token) for _ in range(6)] == [0, 0, 0, 0, 0, 45047]
    platform.interaction(SERVICE, "oUser1", "message")  # a new message starts a new count
    assert await custom(fake, token) == 0
    assert [m.channel for m in platform.messages(openid="oUser1")] == ["custom"] * 6


async def test_three_messages_within_60s_of_subscribe(fake: Client, clock: Clock) -> None:
    token = await oa_token(fake)
    await ctl(fake, "interaction", {"appid": SERVICE, "openid": "oNew", "kind": "subscribe"})
    assert [await custom(fake, token, "oNew") for _ in range(4)] == [0, 0, 0, 45047]
    await ctl(fake, "interaction", {"appid": SERVICE, "openid": "oNew", "kind": "click"})
    clock.advance(60)
    assert await custom(fake, token, "oNew") == 45015


async def test_no_window_or_an_expired_one_is_45015(
    fake: Client, platform: FakePlatform, clock: Clock
) -> None:
    assert await custom(fake, await oa_token(fake)) == 45015
    platform.interaction(SERVICE, "oUser2", "message")
    clock.advance(48 * 3600)
    token = await oa_token(fake)
    assert await custom(fake, token, "oUser2") == 45015
    assert await custom(fake, token, "oStranger") == 40003


async def test_custom_message_shapes(fake: Client, platform: FakePlatform) -> None:
    token = await oa_token(fake)
    platform.interaction(SERVICE, "oUser1", "message")
    form = aiohttp.FormData()
    form.add_field("media", b"\x89PNG not really", filename="a.png", content_type="image/png")
    params = {"access_token": token, "type": "image"}
    media = await (await fake.post("/oa/cgi-bin/media/upload", data=form, params=params)).json()
    assert media["type"] == "image"
    assert media["created_at"] == int(START)
    image = {"touser": "oUser1", "msgtype": "image", "image": {"media_id": media["media_id"]}}
    assert code(await oa(fake, "message/custom/send", image, token)) == 0
    image["image"] = {"media_id": "nope"}
    assert code(await oa(fake, "message/custom/send", image, token)) == 40007
    article = {"title": "t", "url": "https://example.com"}
    news = {"touser": "oUser1", "msgtype": "news", "news": {"articles": [article, article]}}
    assert code(await oa(fake, "message/custom/send", news, token)) == 45008


# --- template messages ----------------------------------------------------------------


async def test_template_needs_a_verified_service_account(fake: Client) -> None:
    for appid, secret in ((SUBSCRIPTION, SUB_SECRET), (UNVERIFIED, UNVERIFIED_SECRET)):
        token = await oa_token(fake, appid, secret)
        assert code(await oa(fake, "message/template/send", template_to("oUser1"), token)) == 48001
    token = await oa_token(fake)
    sent = await oa(fake, "message/template/send", template_to("oUser1"), token)
    assert code(sent) == 0
    assert sent["msgid"]
    assert code(await oa(fake, "message/template/send", template_to("oGhost"), token)) == 43004


async def test_template_daily_quota(fake: Client, clock: Clock) -> None:
    token = await oa_token(fake)
    await ctl(fake, "template_quota", {"appid": SERVICE, "quota": 2})
    sends = [await oa(fake, "message/template/send", template_to("oUser1"), token) for _ in "abc"]
    assert [code(a) for a in sends] == [0, 0, 45009]
    clock.advance(DAY)
    token = await oa_token(fake)
    assert code(await oa(fake, "message/template/send", template_to("oUser1"), token)) == 0


# --- mass send ------------------------------------------------------------------------


async def test_mass_send_openid_list_size(fake: Client) -> None:
    token = await oa_token(fake)
    too_many = [f"o{i}" for i in range(10_001)]
    assert code(await oa(fake, "message/mass/send", mass_to(too_many, "a"), token)) == 40130
    assert code(await oa(fake, "message/mass/send", mass_to(["oUser1"], "b"), token)) == 40130
    ok = await oa(fake, "message/mass/send", mass_to(too_many[:10_000], "c"), token)
    assert ok["errmsg"] == "send job submission success"
    assert ok["msg_data_id"]


async def test_mass_clientmsgid_dedupe(fake: Client, platform: FakePlatform, clock: Clock) -> None:
    token = await oa_token(fake)
    body = mass_to(["oUser1", "oUser2"], "job-1")
    first = await oa(fake, "message/mass/send", body, token)
    again = await oa(fake, "message/mass/send", body, token)
    assert code(again) == 45065
    assert again["msg_id"] == first["msg_id"]
    assert len(platform.messages(openid="oUser1")) == 1  # nothing sent twice
    clock.advance(DAY)
    later = await oa(fake, "message/mass/send", body, await oa_token(fake))
    assert code(later) == 0
    assert later["msg_id"] != first["msg_id"]


async def test_mass_four_per_month_shows_in_the_finish_totals(
    fake: Client, platform: FakePlatform, clock: Clock
) -> None:
    token = await oa_token(fake)
    for i in range(4):
        await oa(fake, "message/mass/send", mass_to(["oUser1", "oUser2"], f"m{i}"), token)
    everyone = mass_to(["oUser1", "oUser2", "oUser3"], "m4")
    fifth = await oa(fake, "message/mass/send", everyone, token)
    finish = await ctl(fake, "mass/finish", {"msg_id": fifth["msg_id"]})
    event = ET.fromstring(finish["xml"])  # noqa: S314 - our own output
    names = ("TotalCount", "FilterCount", "SentCount", "ErrorCount")
    counts = {name: event.findtext(name) for name in names}
    assert counts == {"TotalCount": "3", "FilterCount": "1", "SentCount": "1", "ErrorCount": "0"}
    assert event.findtext("Event") == "MASSSENDJOBFINISH"
    assert event.findtext("MsgID") == str(fifth["msg_id"])
    clock.advance(31 * DAY)
    token = await oa_token(fake)
    next_month = await oa(fake, "message/mass/send", mass_to(["oUser1", "oUser1"], "m5"), token)
    assert platform.world.mass_jobs[next_month["msg_id"]].recipients == ["oUser1"]


async def test_mass_by_tag_and_the_subscription_daily_limit(fake: Client) -> None:
    token = await oa_token(fake)
    tag = (await oa(fake, "tags/create", {"tag": {"name": "VIP"}}, token))["tag"]
    tagging = {"openid_list": ["oUser2"], "tagid": tag["id"]}
    await oa(fake, "tags/members/batchtagging", tagging, token)
    only_tag = {"is_to_all": False, "tag_id": tag["id"]}
    by_tag = {"filter": only_tag, "msgtype": "text", "text": {"content": "vip"}}
    assert code(await oa(fake, "message/mass/sendall", by_tag, token)) == 0
    delivered = (await ctl(fake, "messages", openid="oUser2"))["messages"]
    assert [m["text"] for m in delivered] == ["vip"]
    assert (await ctl(fake, "messages", openid="oUser1"))["messages"] == []
    sub = await oa_token(fake, SUBSCRIPTION, SUB_SECRET)
    to_all = {"filter": {"is_to_all": True}, "msgtype": "text", "text": {"content": "x"}}
    assert code(await oa(fake, "message/mass/sendall", to_all, sub)) == 0
    assert code(await oa(fake, "message/mass/sendall", to_all, sub)) == 45028


# --- tags, users, menu, QR codes ------------------------------------------------------


async def test_tags_and_user_info(fake: Client) -> None:
    token = await oa_token(fake)
    tag = (await oa(fake, "tags/create", {"tag": {"name": "金卡"}}, token))["tag"]
    assert code(await oa(fake, "tags/create", {"tag": {"name": "金卡"}}, token)) == 45157
    batch = {"openid_list": ["oUser1", "oUser3"], "tagid": tag["id"]}
    await oa(fake, "tags/members/batchtagging", batch, token)
    ids = await oa(fake, "tags/getidlist", {"openid": "oUser1"}, token)
    assert ids["tagid_list"] == [tag["id"]]
    await oa(fake, "tags/members/batchuntagging", batch, token)
    info = await oa(fake, "user/info", token=token, openid="oUser1", lang="zh_CN")
    assert (info["subscribe"], info["tagid_list"], info["nickname"]) == (1, [], "小明")
    unknown_tag = {"openid_list": ["oUser1"], "tagid": 999}
    assert code(await oa(fake, "tags/members/batchtagging", unknown_tag, token)) == 45159


async def test_menu_limits(fake: Client) -> None:
    token = await oa_token(fake)
    click = {"type": "click", "name": "签到", "key": "SIGN"}
    assert code(await oa(fake, "menu/create", {"button": [click] * 4}, token)) == 40016
    six = {"name": "更多", "sub_button": [click] * 6}
    assert code(await oa(fake, "menu/create", {"button": [six]}, token)) == 40023
    five = {"name": "更多", "sub_button": [click] * 5}
    assert code(await oa(fake, "menu/create", {"button": [click, five]}, token)) == 0


async def test_showqrcode_until_the_ticket_expires(fake: Client, clock: Clock) -> None:
    token = await oa_token(fake)
    scene = {"scene": {"scene_str": "store-1"}}
    temp = {"expire_seconds": 60, "action_name": "QR_STR_SCENE", "action_info": scene}
    made = await oa(fake, "qrcode/create", temp, token)
    assert made["expire_seconds"] == 60
    forever = {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 7}}}
    permanent = await oa(fake, "qrcode/create", forever, token)
    assert "expire_seconds" not in permanent

    async def show(ticket: str) -> tuple[int, bytes]:
        async with fake.get("/mp/cgi-bin/showqrcode", params={"ticket": ticket}) as resp:
            return resp.status, await resp.read()

    status, image = await show(made["ticket"])
    assert status == 200
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    clock.advance(60)
    assert (await show(made["ticket"]))[0] == 404
    assert (await show(permanent["ticket"]))[0] == 200
    assert (await show("nope"))[0] == 404


# --- failures, calls, time, reset -----------------------------------------------------


async def test_injected_burst_then_ok(fake: Client, platform: FakePlatform) -> None:
    token = await oa_token(fake)
    platform.interaction(SERVICE, "oUser1", "message")
    spec = {"platform": "oa", "api": "cgi-bin/message/custom/send", "errcode": 45011, "times": 3}
    await ctl(fake, "fail", spec)
    assert [await custom(fake, token) for _ in range(4)] == [45011, 45011, 45011, 0]
    assert len(platform.messages(openid="oUser1")) == 1  # the failed calls delivered nothing
    recorded = await ctl(fake, "calls", platform="oa", api="cgi-bin/message/custom/send")
    assert [c["errcode"] for c in recorded["calls"]] == [45011, 45011, 45011, 0]


async def test_injected_delay(fake: Client, platform: FakePlatform) -> None:
    token = await oa_token(fake)
    await ctl(fake, "fail", {"platform": "oa", "api": "*", "delay": 0.05, "times": 1})
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert code(await oa(fake, "tags/get", token=token)) == 0  # slow, then answered
    assert loop.time() - started >= 0.05
    assert [f.times for f in platform.world.failures] == [0]


async def test_calls_are_recorded_without_the_token(fake: Client) -> None:
    token = await oa_token(fake)
    seq = (await ctl(fake, "calls"))["calls"][-1]["seq"]
    await oa(fake, "tags/getidlist", {"openid": "oUser1"}, token)
    await oa(fake, "user/info", token=token, openid="nobody")
    calls = (await ctl(fake, "calls", since=seq))["calls"]
    assert [(c["api"], c["errcode"]) for c in calls] == [
        ("cgi-bin/tags/getidlist", 0),
        ("cgi-bin/user/info", 40003),
    ]
    assert calls[0]["body"] == {"openid": "oUser1"}
    assert calls[1]["query"] == {"openid": "nobody"}


async def test_wrong_method_unknown_api_and_bad_json(fake: Client) -> None:
    token = await oa_token(fake)
    assert code(await oa(fake, "menu/create", token=token)) == 43002  # a GET
    async with fake.get("/oa/cgi-bin/nothing", params={"access_token": token}) as resp:
        assert resp.status == 404
    params = {"access_token": token}
    async with fake.post("/oa/cgi-bin/tags/create", data=b"{nope", params=params) as resp:
        assert code(await resp.json()) == 47001


async def test_control_time_reset_and_bad_input(fake: Client, platform: FakePlatform) -> None:
    token = await oa_token(fake)
    assert (await ctl(fake, "time", {"advance": 7200}))["offset"] == 7200
    assert code(await oa(fake, "tags/get", token=token)) == 42001
    await ctl(fake, "users", {"appid": SERVICE, "openid": "oExtra", "unionid": "uX"})
    await ctl(fake, "reset", {})
    assert platform.offset == 0
    assert set(platform.world.accounts[SERVICE].users) == {"oUser1", "oUser2", "oUser3"}
    async with fake.post("/_control/fail", json={"platform": "nope"}) as resp:
        assert resp.status == 400
    async with fake.post("/_control/mass/finish", json={"msg_id": 1}) as resp:
        assert resp.status == 404


async def test_mounted_under_the_fake_prefix(aiohttp_client: Any, platform: FakePlatform) -> None:
    app = web.Application()
    mount_fake_platform(app, platform)
    client: Client = await aiohttp_client(app)
    params = {"grant_type": "client_credential", "appid": SERVICE, "secret": SERVICE_SECRET}
    assert (await call(client, "/_fake/oa/cgi-bin/token", **params))["access_token"]
    assert (await call(client, "/_fake/_control/tokens"))["tokens"][0]["issued"] == 1


# --- WeCom ----------------------------------------------------------------------------


async def test_welcome_code_single_use_within_20s(fake: Client, clock: Clock) -> None:
    token = await wecom_token(fake)
    minted = await ctl(fake, "welcome_code", {"userid": "lisi", "external_userid": "wmNew"})
    body = {"welcome_code": minted["welcome_code"], "text": {"content": "欢迎"}}
    clock.advance(19)
    assert code(await ec(fake, "send_welcome_msg", body, token)) == 0
    assert code(await ec(fake, "send_welcome_msg", body, token)) == 41051
    late = await ctl(fake, "welcome_code", {"userid": "lisi", "external_userid": "wmNew"})
    clock.advance(20)
    body["welcome_code"] = late["welcome_code"]
    assert code(await ec(fake, "send_welcome_msg", body, token)) == 41096
    body["welcome_code"] = "nope"
    assert code(await ec(fake, "send_welcome_msg", body, token)) == 41096
    got = await ec(fake, "get", token=token, external_userid="wmNew")
    assert [f["userid"] for f in got["follow_user"]] == ["lisi"]
    welcomed = (await ctl(fake, "messages", userid="lisi"))["messages"]
    assert [(m["to"], m["channel"], m["text"]) for m in welcomed] == [("wmNew", "welcome", "欢迎")]


async def test_batch_get_by_user_pages_with_a_cursor(fake: Client, platform: FakePlatform) -> None:
    for i in range(4):
        platform.add_customer(f"wmExtra{i}", f"客户{i}", follow_user=[{"userid": "zhangsan"}])
    token = await wecom_token(fake)
    seen: list[str] = []
    cursor = ""
    for _ in range(3):
        body = {"userid_list": ["zhangsan"], "cursor": cursor, "limit": 2}
        answer = await ec(fake, "batch/get_by_user", body, token)
        seen += [i["external_contact"]["external_userid"] for i in answer["external_contact_list"]]
        cursor = answer["next_cursor"]
    assert cursor == ""
    assert len(seen) == len(set(seen)) == 6
    whole = await ec(fake, "batch/get_by_user", {"userid_list": ["zhangsan"], "limit": 100}, token)
    infos = {i["external_contact"]["external_userid"]: i for i in whole["external_contact_list"]}
    assert infos["wmCust1"]["follow_info"]["tag_id"] == ["etFixtureVip"]
    assert infos["wmCust1"]["follow_info"]["state"] == "store-001"
    bogus = {"userid_list": ["zhangsan"], "cursor": "garbage!", "limit": 2}
    assert code(await ec(fake, "batch/get_by_user", bogus, token)) == 40058


async def test_groupmsg_status_changes_when_staff_confirm(
    fake: Client, platform: FakePlatform
) -> None:
    token = await wecom_token(fake)
    platform.corp().receive_rule = "day"  # the corp's 群发规则: one a customer a day
    task = {
        "chat_type": "single",
        "external_userid": ["wmCust1", "wmCust2", "wmCust3"],
        "sender": "zhangsan",
        "text": {"content": "会员日"},
    }
    made = await ec(fake, "add_msg_template", task, token)
    assert made["fail_list"] == ["wmCust3"]  # not zhangsan's customer
    query = {"msgid": made["msgid"], "userid": "zhangsan", "limit": 100, "cursor": ""}

    async def statuses(msgid: str) -> dict[str, int]:
        result = await ec(fake, "get_groupmsg_send_result", query | {"msgid": msgid}, token)
        return {r["external_userid"]: r["status"] for r in result["send_list"]}

    assert await statuses(made["msgid"]) == {"wmCust1": 0, "wmCust2": 0, "wmCust3": 2}
    confirmed = await ctl(fake, "groupmsg/confirm", {"msgid": made["msgid"], "userid": "zhangsan"})
    assert confirmed["sent"] == 2
    assert await statuses(made["msgid"]) == {"wmCust1": 1, "wmCust2": 1, "wmCust3": 2}
    result = await ec(fake, "get_groupmsg_send_result", query, token)
    assert result["send_list"][0]["send_time"] == int(START)
    again = await ec(fake, "add_msg_template", task, token)
    assert again["fail_list"] == [
        "wmCust1",
        "wmCust2",
        "wmCust3",
    ]  # one a day each (the rule)
    assert await statuses(again["msgid"]) == {"wmCust1": 3, "wmCust2": 3, "wmCust3": 2}
    assert [m.text for m in platform.messages(external_userid="wmCust1")] == ["会员日"]


async def test_corp_tags_and_mark_tag(fake: Client) -> None:
    token = await wecom_token(fake)
    added = await ec(fake, "add_corp_tag", {"group_name": "兴趣", "tag": [{"name": "咖啡"}]}, token)
    tag_id = added["tag_group"]["tag"][0]["id"]
    groups = await ec(fake, "get_corp_tag_list", {"tag_id": [], "group_id": []}, token)
    assert [g["group_name"] for g in groups["tag_group"]] == ["客户等级", "兴趣"]
    mark = {"userid": "lisi", "external_userid": "wmCust3", "add_tag": [tag_id], "remove_tag": []}
    assert code(await ec(fake, "mark_tag", mark, token)) == 0
    got = await ec(fake, "get", token=token, external_userid="wmCust3")
    tag = {"group_name": "兴趣", "tag_name": "咖啡", "tag_id": tag_id, "type": 1}
    assert got["follow_user"][0]["tags"] == [tag]
    assert code(await ec(fake, "mark_tag", mark | {"add_tag": ["etNope"]}, token)) == 40068
    assert code(await ec(fake, "mark_tag", mark | {"userid": "zhangsan"}, token)) == 84061


async def test_contacts_lists_and_agent_messages(fake: Client, platform: FakePlatform) -> None:
    token = await wecom_token(fake)
    got = await ec(fake, "get", token=token, external_userid="wmCust2")
    assert got["external_contact"]["unionid"] == "uUnion2"
    assert {f["userid"] for f in got["follow_user"]} == {"zhangsan", "lisi"}
    assert code(await ec(fake, "get", token=token, external_userid="wmNope")) == 84061
    listed = await ec(fake, "list", token=token, userid="lisi")
    assert listed["external_userid"] == ["wmCust2", "wmCust3"]
    staff = await ec(fake, "get_follow_user_list", token=token)
    assert staff["follow_user"] == ["zhangsan", "lisi"]
    agent = await wecom_token(fake, AGENT_SECRET)
    text = {"msgtype": "text", "agentid": AGENT_ID, "text": {"content": "新客户"}}
    sent = await wc(fake, "message/send", {"touser": "lisi|ghost"} | text, agent)
    assert sent["invaliduser"] == "ghost"
    assert [m.text for m in platform.messages(userid="lisi")] == ["新客户"]


async def test_group_chats_and_transfers(fake: Client, clock: Clock) -> None:
    token = await wecom_token(fake)
    chats = await ec(fake, "groupchat/list", {"status_filter": 0, "limit": 10}, token)
    chat_id = chats["group_chat_list"][0]["chat_id"]
    chat = await ec(fake, "groupchat/get", {"chat_id": chat_id, "need_name": 1}, token)
    assert chat["group_chat"]["owner"] == "zhangsan"
    assert len(chat["group_chat"]["member_list"]) == 3
    pair = {"handover_userid": "zhangsan", "takeover_userid": "lisi"}
    customers = {"external_userid": ["wmCust1", "wmCust3"]}
    moved = await ec(fake, "transfer_customer", pair | customers, token)
    assert [c["errcode"] for c in moved["customer"]] == [0, 84061]
    waiting = await ec(fake, "transfer_result", pair | {"cursor": ""}, token)
    assert waiting["customer"][0]["status"] == 2
    clock.advance(DAY)
    token = await wecom_token(fake)
    done = await ec(fake, "transfer_result", pair | {"cursor": ""}, token)
    assert done["customer"][0]["status"] == 1
    got = await ec(fake, "get", token=token, external_userid="wmCust1")
    assert [f["userid"] for f in got["follow_user"]] == ["lisi"]


# --- global rate limits ---------------------------------------------------------------


async def test_rate_limit_refuses_calls_above_the_rate_until_the_clock_moves(
    fake: Client, clock: Clock
) -> None:
    token = await oa_token(fake)
    await ctl(fake, "interaction", {"appid": SERVICE, "openid": "oUser1", "kind": "message"})
    limit = {"platform": "oa", "api": "cgi-bin/message/custom/send", "per_second": 2}
    assert await ctl(fake, "rate_limit", limit) == {"ok": True}
    assert [await custom(fake, token) for _ in range(3)] == [0, 0, 45011]
    clock.advance(0.5)  # half a second refills one token
    assert [await custom(fake, token) for _ in range(2)] == [0, 45011]
    assert code(await oa(fake, "message/template/send", template_to("oUser1"), token)) == 0
    await ctl(fake, "rate_limit", {**limit, "per_second": 0})  # lifted
    assert await custom(fake, token) == 0


async def test_wecom_rate_limit_on_every_api_answers_45009(fake: Client) -> None:
    agent = await wecom_token(fake, AGENT_SECRET)
    await ctl(fake, "rate_limit", {"platform": "wecom", "per_second": 1})
    message = {"touser": "lisi", "msgtype": "text", "agentid": AGENT_ID, "text": {"content": "hi"}}
    assert code(await wc(fake, "message/send", message, agent)) == 0
    assert code(await wc(fake, "message/send", message, agent)) == 45009


async def test_rate_limit_control_rejects_bad_input(fake: Client) -> None:
    for body in ({"platform": "nope", "per_second": 1}, {"platform": "oa", "per_second": -1}):
        async with fake.post("/_control/rate_limit", json=body) as resp:
            assert resp.status == 400
