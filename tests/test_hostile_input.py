"""Hostile and malformed input: 4xx with a log line, never a 500, nothing processed."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from bot.config import Settings
from bot.devtools.signer import sign_oa
from bot.wechat.crypto import MessageCrypto, sha1_signature
from storage.models import InboundEvent
from tests.conftest import OA_AES_KEY, OA_APPID, OA_TOKEN, AppMaker, base_config, make_settings
from tests.fakes import FakeWall
from tests.helpers import oa_text, post_oa

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"""

XXE = """<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"""

DUPLICATED = (
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>text</MsgType><MsgType>image</MsgType><Content>x</Content><MsgId>3</MsgId></xml>"
)
NO_MSGTYPE = (
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
    "<Content>x</Content><MsgId>4</MsgId></xml>"
)
BAD_CREATETIME = (
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>soon</CreateTime>"
    "<MsgType>text</MsgType><Content>x</Content><MsgId>5</MsgId></xml>"
)
EVENT_WITHOUT_EVENT = (
    "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>event</MsgType></xml>"
)


@pytest.fixture
def oa_settings(database: str) -> Settings:
    return make_settings(base_config(database))


async def _count_rows(client: Any) -> int:
    from bot.appkeys import RECORDER

    await client.app[RECORDER].flush()
    return await InboundEvent.all().count()


@pytest.mark.parametrize("account", ["brand", "plain"])
@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        XXE,
        DUPLICATED,
        NO_MSGTYPE,
        BAD_CREATETIME,
        EVENT_WITHOUT_EVENT,
        "not xml at all",
        "<xml><unclosed></xml>",
        "<root><a>1</a></root>",
        "",
    ],
    ids=[
        "billion-laughs",
        "xxe",
        "duplicated",
        "no-msgtype",
        "bad-createtime",
        "event-without-event",
        "not-xml",
        "malformed",
        "wrong-root",
        "empty",
    ],
)
async def test_malformed_plaintext_is_400_and_logged(
    make_client: AppMaker,
    wall: FakeWall,
    oa_settings: Settings,
    caplog: pytest.LogCaptureFixture,
    account: str,
    body: str,
) -> None:
    client = await make_client(oa_settings)
    with caplog.at_level(logging.WARNING, logger="bot.callback"):
        resp = await _post_raw(client, oa_settings, body, account, int(wall.now))
    assert resp.status == 400
    assert "Traceback" not in await resp.text()
    assert any("callback rejected" in r.getMessage() for r in caplog.records)
    assert await _count_rows(client) == 0


async def _post_raw(client: Any, settings: Settings, body: str, account: str, ts: int) -> Any:
    """Encrypt whatever body we have (even non-XML) as WeChat would, then post it."""
    acc = settings.accounts[account]
    if acc.mode == "plaintext":
        signed = sign_oa(acc, "<xml><ToUserName>x</ToUserName></xml>", ts)
        return await client.post(f"/wechat/{account}", params=signed.query, data=body)
    crypto = MessageCrypto(acc.token, acc.encoding_aes_key, acc.appid)
    encrypted = crypto.encrypt(body)
    nonce = "424242"
    query = {
        "signature": sha1_signature(acc.token, str(ts), nonce),
        "timestamp": str(ts),
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": sha1_signature(acc.token, str(ts), nonce, encrypted),
    }
    envelope = f"<xml><ToUserName>x</ToUserName><Encrypt>{encrypted}</Encrypt></xml>"
    return await client.post(f"/wechat/{account}", params=query, data=envelope)


def _aes_query(ts: int, encrypt: str, nonce: str = "7") -> dict[str, str]:
    return {
        "signature": sha1_signature(OA_TOKEN, str(ts), nonce),
        "timestamp": str(ts),
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": sha1_signature(OA_TOKEN, str(ts), nonce, encrypt),
    }


@pytest.mark.parametrize(
    "encrypt",
    [
        "!!!not-base64!!!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"A" * 32).decode(),  # decrypts to garbage: bad padding
        MessageCrypto(OA_TOKEN, OA_AES_KEY, "wxSOMEONEELSE0000").encrypt(oa_text("帮助")),
        MessageCrypto(OA_TOKEN, "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut", OA_APPID).encrypt(
            oa_text("帮助")
        ),
    ],
    ids=["bad-base64", "short", "bad-padding", "wrong-appid", "wrong-key"],
)
async def test_bad_ciphertext_is_400(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings, encrypt: str
) -> None:
    client = await make_client(oa_settings)
    ts = int(wall.now)
    body = f"<xml><ToUserName>x</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    resp = await client.post("/wechat/brand", params=_aes_query(ts, encrypt), data=body)
    assert resp.status == 400
    assert await _count_rows(client) == 0


async def test_missing_encrypt_element_is_400(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings
) -> None:
    client = await make_client(oa_settings)
    ts = int(wall.now)
    resp = await client.post("/wechat/brand", params=_aes_query(ts, ""), data="<xml><A>1</A></xml>")
    assert resp.status == 400


async def test_oversized_body_is_413_before_reading(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings
) -> None:
    client = await make_client(oa_settings)
    signed = sign_oa(oa_settings.accounts["plain"], oa_text("x" * 70_000), int(wall.now))
    resp = await client.post("/wechat/plain", params=signed.query, data=signed.body)
    assert resp.status == 413


async def test_chunked_body_over_the_cap_is_413(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings
) -> None:
    client = await make_client(oa_settings)
    signed = sign_oa(oa_settings.accounts["plain"], oa_text("帮助"), int(wall.now))

    async def chunks() -> Any:
        for _ in range(80):
            yield b"x" * 1024

    resp = await client.post("/wechat/plain", params=signed.query, data=chunks())
    assert resp.status == 413


async def test_bad_plain_signature_is_403_before_the_body_is_read(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings
) -> None:
    client = await make_client(oa_settings)
    signed = sign_oa(oa_settings.accounts["brand"], oa_text("帮助"), int(wall.now))
    resp = await client.post(
        "/wechat/brand", params={**signed.query, "signature": "0" * 40}, data=signed.body
    )
    assert resp.status == 403
    no_query = await client.post("/wechat/brand", data=signed.body)
    assert no_query.status == 403


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
async def test_stale_timestamps_are_403(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings, skew: int
) -> None:
    client = await make_client(oa_settings)
    resp = await post_oa(client, oa_settings, oa_text("帮助"), timestamp=int(wall.now) + skew)
    assert resp.status == 403
    ok = await post_oa(client, oa_settings, oa_text("帮助"), timestamp=int(wall.now) + 299)
    assert ok.status == 200


async def test_plaintext_replay_with_another_body_is_403(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings
) -> None:
    client = await make_client(oa_settings)
    ts = int(wall.now)
    first = await post_oa(
        client, oa_settings, oa_text("帮助"), account="plain", timestamp=ts, nonce="55"
    )
    assert first.status == 200
    again = await post_oa(
        client, oa_settings, oa_text("帮助"), account="plain", timestamp=ts, nonce="55"
    )
    assert again.status == 403  # a new MsgId means a different body under a used nonce


async def test_illegal_control_characters_are_stripped(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings
) -> None:
    client = await make_client(oa_settings)
    resp = await post_oa(client, oa_settings, oa_text("帮\x01助\x0b"), timestamp=int(wall.now))
    assert resp.status == 200
    assert await _count_rows(client) == 1


async def test_optional_fields_missing_are_empty_not_errors(
    make_client: AppMaker, wall: FakeWall, oa_settings: Settings
) -> None:
    client = await make_client(oa_settings)
    subscribe_without_key = (
        "<xml><ToUserName>gh</ToUserName><FromUserName>oNew</FromUserName>"
        f"<CreateTime>{int(wall.now)}</CreateTime><MsgType>event</MsgType>"
        "<Event>subscribe</Event><Unknown>extra</Unknown></xml>"
    )
    resp = await post_oa(client, oa_settings, subscribe_without_key, timestamp=int(wall.now))
    assert resp.status == 200
