"""The fake platform enforces what it fakes: one test per rule, over raw HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from bot.devtools.fakeplatform.control import fail, interaction, welcome_code
from tests.conftest import OA_APPID, WECOM_CORP_ID, FakeServer
from tests.fakes import FakeWall


class Api:
    """Raw calls to the fake, as our clients would make them."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        resp = await self.client.get(path, params=params)
        result: dict[str, Any] = await resp.json()
        return result

    async def post(self, path: str, body: Any, **params: Any) -> dict[str, Any]:
        resp = await self.client.post(path, params=params, json=body)
        result: dict[str, Any] = await resp.json()
        return result

    async def oa_token(self, secret: str = "brand-secret") -> str:
        body = await self.get(
            "/oa/cgi-bin/token", grant_type="client_credential", appid=OA_APPID, secret=secret
        )
        return str(body.get("access_token", body.get("errcode")))

    async def wecom_token(self, secret: str) -> str:
        body = await self.get("/wecom/cgi-bin/gettoken", corpid=WECOM_CORP_ID, corpsecret=secret)
        return str(body.get("access_token", body.get("errcode")))

    async def cs(self, token: str, openid: str, text: str = "hi") -> int:
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        return int(
            (await self.post("/oa/cgi-bin/message/custom/send", body, access_token=token))[
                "errcode"
            ]
        )


@pytest.fixture
async def api(aiohttp_client: Any, fake: FakeServer) -> Api:
    from bot.devtools.fakeplatform import create_fake_app

    return Api(await aiohttp_client(create_fake_app(fake.platform)))


async def test_oa_token_expires_after_7200_s(api: Api, wall: FakeWall) -> None:
    token = await api.oa_token()
    assert (await api.get("/oa/cgi-bin/user/info", access_token=token, openid="oUser1"))[
        "errcode"
    ] == 0
    wall.advance(7201)
    assert (await api.get("/oa/cgi-bin/user/info", access_token=token, openid="oUser1"))[
        "errcode"
    ] == 42001


async def test_a_new_token_retires_the_old_after_5_minutes(api: Api, wall: FakeWall) -> None:
    old = await api.oa_token()
    new = await api.oa_token()
    wall.advance(299)
    assert (await api.get("/oa/cgi-bin/user/info", access_token=old, openid="oUser1"))[
        "errcode"
    ] == 0
    wall.advance(2)
    assert (await api.get("/oa/cgi-bin/user/info", access_token=old, openid="oUser1"))[
        "errcode"
    ] == 42001
    assert (await api.get("/oa/cgi-bin/user/info", access_token=new, openid="oUser1"))[
        "errcode"
    ] == 0


async def test_wrong_secrets_and_unknown_tokens(api: Api) -> None:
    assert await api.oa_token("wrong") == "40125"
    assert await api.wecom_token("wrong") == "40001"
    bad_corp = await api.get("/wecom/cgi-bin/gettoken", corpid="wwOther", corpsecret="agent-secret")
    assert bad_corp["errcode"] == 40013
    assert (await api.get("/oa/cgi-bin/user/info", access_token="nope", openid="x"))[
        "errcode"
    ] == 40001
    agent = await api.wecom_token("agent-secret")
    contact = await api.wecom_token("contact-secret")
    assert agent != contact
    forbidden = await api.get(
        "/wecom/cgi-bin/externalcontact/get", access_token=agent, external_userid="wmCustomer1"
    )
    assert forbidden["errcode"] == 48002
    assert (
        await api.get(
            "/wecom/cgi-bin/externalcontact/get", access_token="nope", external_userid="wmCustomer1"
        )
    )["errcode"] == 40014


async def test_customer_service_window_after_a_message_allows_5_in_48_h(
    api: Api, fake: FakeServer, wall: FakeWall
) -> None:
    token = await api.oa_token()
    assert await api.cs(token, "oUser1") == 45015
    interaction(fake.platform, {"appid": OA_APPID, "openid": "oUser1", "kind": "message"})
    assert [await api.cs(token, "oUser1") for _ in range(6)] == [0, 0, 0, 0, 0, 45047]
    interaction(fake.platform, {"appid": OA_APPID, "openid": "oUser1", "kind": "message"})
    wall.advance(48 * 3600 + 1)
    assert await api.cs(await api.oa_token(), "oUser1") == 45015


async def test_customer_service_window_after_subscribe_allows_3_in_60_s(
    api: Api, fake: FakeServer, wall: FakeWall
) -> None:
    token = await api.oa_token()
    interaction(fake.platform, {"appid": OA_APPID, "openid": "oUser2", "kind": "subscribe"})
    assert [await api.cs(token, "oUser2") for _ in range(4)] == [0, 0, 0, 45047]
    interaction(fake.platform, {"appid": OA_APPID, "openid": "oUser2", "kind": "click"})
    wall.advance(61)
    assert await api.cs(token, "oUser2") == 45015


async def test_template_messages_need_a_verified_service_account_and_have_a_quota(
    api: Api, fake: FakeServer
) -> None:
    token = await api.oa_token()
    body = {"touser": "oUser1", "template_id": "T", "data": {"a": {"value": "1"}}}
    fake.platform.accounts[OA_APPID].template_quota = 2
    answers = [
        await api.post("/oa/cgi-bin/message/template/send", body, access_token=token)
        for _ in range(3)
    ]
    assert [a["errcode"] for a in answers] == [0, 0, 45009]
    fake.platform.accounts[OA_APPID].verified = False
    denied = await api.post("/oa/cgi-bin/message/template/send", body, access_token=token)
    assert denied["errcode"] == 48001


async def test_mass_send_limits_and_clientmsgid(api: Api, fake: FakeServer) -> None:
    token = await api.oa_token()

    def body(openids: list[str], cid: str) -> dict[str, Any]:
        return {"touser": openids, "msgtype": "text", "text": {"content": "m"}, "clientmsgid": cid}

    too_many = [f"o{i}" for i in range(10_001)]
    assert (
        await api.post("/oa/cgi-bin/message/mass/send", body(too_many, "a"), access_token=token)
    )["errcode"] == 40130
    first = await api.post(
        "/oa/cgi-bin/message/mass/send", body(["oUser1", "oUser2"], "b"), access_token=token
    )
    again = await api.post(
        "/oa/cgi-bin/message/mass/send", body(["oUser1", "oUser2"], "b"), access_token=token
    )
    assert first["errcode"] == 0
    assert (again["errcode"], again["msg_id"]) == (45065, first["msg_id"])
    assert len(fake.platform.delivered_to("oUser1")) == 1
    for cid in "cdef":
        last = await api.post(
            "/oa/cgi-bin/message/mass/send", body(["oUser1", "oUser3"], cid), access_token=token
        )
    assert len(fake.platform.delivered_to("oUser1")) == 4  # four a month on a service account
    assert len(fake.platform.delivered_to("oUser3")) == 4
    job = fake.platform.extra["mass_jobs"][last["msg_id"]]
    assert (job["sent"], job["filtered"]) == (["oUser3"], ["oUser1"])


async def test_welcome_codes_are_single_use_and_live_20_s(
    api: Api, fake: FakeServer, wall: FakeWall
) -> None:
    token = await api.wecom_token("contact-secret")
    path = "/wecom/cgi-bin/externalcontact/send_welcome_msg"
    code = welcome_code(fake.platform, {"userid": "zhangsan", "external_userid": "wmA"})[
        "welcome_code"
    ]
    wall.advance(19)
    send = {"welcome_code": code, "text": {"content": "欢迎"}}
    assert (await api.post(path, send, access_token=token))["errcode"] == 0
    assert (await api.post(path, send, access_token=token))["errcode"] == 41051
    late = welcome_code(fake.platform, {"userid": "zhangsan", "external_userid": "wmB"})[
        "welcome_code"
    ]
    wall.advance(21)
    assert (await api.post(path, {"welcome_code": late}, access_token=token))["errcode"] == 41096


async def test_failure_injection_burst_then_ok_and_calls_recorded(
    api: Api, fake: FakeServer
) -> None:
    token = await api.oa_token()
    fail(
        fake.platform, {"platform": "oa", "api": "cgi-bin/user/info", "errcode": 45011, "times": 2}
    )
    codes = [
        (await api.get("/oa/cgi-bin/user/info", access_token=token, openid="oUser1"))["errcode"]
        for _ in range(3)
    ]
    assert codes == [45011, 45011, 0]
    recorded = [(c.api, c.errcode) for c in fake.platform.calls if c.api == "cgi-bin/user/info"]
    assert recorded == [("cgi-bin/user/info", 45011)] * 2 + [("cgi-bin/user/info", 0)]
    assert all("access_token" not in c.query for c in fake.platform.calls)


async def test_showqrcode_serves_a_png_until_the_ticket_expires(api: Api, wall: FakeWall) -> None:
    token = await api.oa_token()
    qr = await api.post(
        "/oa/cgi-bin/qrcode/create",
        {
            "expire_seconds": 60,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": "ref_X"}},
        },
        access_token=token,
    )
    resp = await api.client.get("/mp/cgi-bin/showqrcode", params={"ticket": qr["ticket"]})
    assert resp.status == 200
    assert (await resp.read()).startswith(b"\x89PNG")
    wall.advance(61)
    gone = await api.client.get("/mp/cgi-bin/showqrcode", params={"ticket": qr["ticket"]})
    assert gone.status == 404


async def test_control_api_over_http(api: Api, fake: FakeServer) -> None:
    resp = await api.client.post(
        "/_control/interaction", json={"appid": OA_APPID, "openid": "oNew", "kind": "message"}
    )
    assert resp.status == 200
    token = await api.oa_token()
    assert await api.cs(token, "oNew", "你好") == 0
    msgs = await (await api.client.get("/_control/messages", params={"openid": "oNew"})).json()
    assert [(m["channel"], m["text"]) for m in msgs["messages"]] == [("客服消息", "你好")]
    bad = await api.client.post(
        "/_control/interaction", json={"appid": OA_APPID, "openid": "x", "kind": "dance"}
    )
    assert bad.status == 400
