"""The OA endpoint end to end: official vectors, modes, verification, help reply."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from bot.appkeys import RECORDER
from bot.wechat.crypto import sha1_signature
from storage.models import InboundEvent
from tests.conftest import OA_TOKEN, AppMaker, base_config, make_settings, read_payload
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields

VECTOR_QUERY = {
    "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
    "timestamp": "1409735669",
    "nonce": "1320562132",
    "encrypt_type": "aes",
}


def _with_plain_signature(query: dict[str, str]) -> dict[str, str]:
    sig = sha1_signature(OA_TOKEN, query["timestamp"], query["nonce"])
    return {**query, "signature": sig}


async def test_official_vector_decrypts_and_gets_an_encrypted_reply(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    wall.now = 1409735669
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    resp = await client.post(
        "/wechat/brand",
        params=_with_plain_signature(VECTOR_QUERY),
        data=read_payload("oa_encrypted_official_sample.xml"),
    )
    assert resp.status == 200
    body = await resp.text()
    assert "<Encrypt>" in body
    assert "<MsgSignature>" in body
    fields = reply_fields(oa_crypto(settings, "brand"), body)
    assert fields["ToUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert fields["FromUserName"] == "gh_10f6c3c3ac5a"
    assert "abcdteT" in fields["Content"]  # the fallback quotes what it did not understand
    await client.app[RECORDER].flush()
    rows = await InboundEvent.all()
    assert [(r.dedupe_key, r.kind, r.outcome) for r in rows] == [
        ("oa:brand:msg:6054768590064713728", "text", "fallback")
    ]


async def test_official_vector_rejects_a_tampered_msg_signature(
    make_client: AppMaker, wall: FakeWall
) -> None:
    wall.now = 1409735669
    client = await make_client()
    query = _with_plain_signature({**VECTOR_QUERY, "msg_signature": "0" * 40})
    resp = await client.post(
        "/wechat/brand", params=query, data=read_payload("oa_encrypted_official_sample.xml")
    )
    assert resp.status == 403
    assert await InboundEvent.all().count() == 0


async def test_url_verification_answers_echostr_without_freshness(
    client: TestClient[Any, Any],
) -> None:
    query = {"timestamp": "1409735669", "nonce": "1320562132", "echostr": "hello-echo-42"}
    resp = await client.get("/wechat/brand", params=_with_plain_signature(query))
    assert resp.status == 200
    assert await resp.text() == "hello-echo-42"
    bad = {**_with_plain_signature(query), "signature": "f" * 40}
    assert (await client.get("/wechat/brand", params=bad)).status == 403


async def test_help_reply_in_safe_mode(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    resp = await post_oa(client, settings, oa_text("帮助"), timestamp=int(wall.now))
    assert resp.status == 200
    fields = reply_fields(oa_crypto(settings), await resp.text())
    assert fields["MsgType"] == "text"
    assert "帮助" in fields["Content"]
    assert "可用指令" in fields["Content"]
    assert fields["ToUserName"] == "oMember1"


async def test_plaintext_mode_answers_in_plaintext(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    resp = await post_oa(
        client, settings, oa_text("help"), account="plain", timestamp=int(wall.now)
    )
    assert resp.status == 200
    fields = reply_fields(None, await resp.text())
    assert "可用指令" in fields["Content"]


async def test_safe_mode_refuses_plaintext_callbacks(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    signed_plain = make_settings(base_config(database)).accounts["plain"]
    from bot.devtools.signer import sign_oa

    signed = sign_oa(signed_plain, oa_text("帮助"), int(wall.now))
    resp = await client.post("/wechat/brand", params=signed.query, data=signed.body)
    assert resp.status == 403


async def test_unknown_account_is_404(client: TestClient[Any, Any]) -> None:
    assert (await client.post("/wechat/nope", data="<xml/>")).status == 404


async def test_events_without_reply_answer_success(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    resp = await post_oa(
        client, settings, read_payload("oa_event_location.xml"), timestamp=int(wall.now)
    )
    assert resp.status == 200
    assert await resp.text() == "success"
    await client.app[RECORDER].flush()
    row = await InboundEvent.get()
    assert (row.kind, row.outcome) == ("event:location", "unhandled")


async def test_previous_aes_key_still_decrypts_during_rotation(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    old_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    new_key = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
    rotated = base_config(database)
    rotated["accounts"]["brand"].update(encoding_aes_key=new_key, previous_encoding_aes_key=old_key)
    settings = make_settings(rotated)
    client = await make_client(settings)
    sender_settings = make_settings(base_config(database))  # WeChat still uses the old key
    resp = await post_oa(client, sender_settings, oa_text("帮助"), timestamp=int(wall.now))
    assert resp.status == 200
    # The reply is encrypted with the new (current) key.
    fields = reply_fields(oa_crypto(settings), await resp.text())
    assert "可用指令" in fields["Content"]


async def test_compatible_mode_accepts_plaintext_and_encrypted_callbacks(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    from bot.devtools.signer import sign_oa

    settings = make_settings(base_config(database))
    client = await make_client(settings)
    account = settings.accounts["compat"]
    encrypted = sign_oa(account, oa_text("帮助"), int(wall.now))
    resp = await client.post("/wechat/compat", params=encrypted.query, data=encrypted.body)
    assert "可用指令" in reply_fields(oa_crypto(settings, "compat"), await resp.text())["Content"]
    plain = sign_oa(account, oa_text("help"), int(wall.now), encrypt=False)
    resp = await client.post("/wechat/compat", params=plain.query, data=plain.body)
    assert "可用指令" in reply_fields(None, await resp.text())["Content"]
