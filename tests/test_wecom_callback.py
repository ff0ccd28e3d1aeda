"""The WeCom endpoint with the official vectors, agent messages and 客户联系 events."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bot.appkeys import RECORDER
from storage.models import InboundEvent
from tests.conftest import AppMaker, base_config, make_settings, read_payload
from tests.fakes import FakeWall
from tests.helpers import post_wecom, reply_fields, wecom_crypto

ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
VERIFY = (
    "msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780"
)
POST_QUERY = {
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "timestamp": "1409659813",
    "nonce": "1372623149",
}


async def test_verify_url_official_vector_percent_encoded(client: Any) -> None:
    resp = await client.get(f"/wecom/corp?{VERIFY}&echostr={quote(ECHOSTR, safe='')}")
    assert resp.status == 200
    assert await resp.text() == "1616140317555161061"


async def test_verify_url_repairs_plus_decoded_as_space(client: Any) -> None:
    # An unencoded '+' in the query arrives as a space after URL decoding.
    resp = await client.get(f"/wecom/corp?{VERIFY}&echostr={ECHOSTR}")
    assert resp.status == 200
    assert await resp.text() == "1616140317555161061"


async def test_verify_url_bad_signature_is_403(client: Any) -> None:
    resp = await client.get(
        "/wecom/corp?msg_signature="
        + "0" * 40
        + f"&timestamp=1409659589&nonce=263014780&echostr={quote(ECHOSTR, safe='')}"
    )
    assert resp.status == 403


async def test_official_post_vector_is_an_agent_text(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    wall.now = 1409659813
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    resp = await client.post(
        "/wecom/corp", params=POST_QUERY, data=read_payload("wecom_encrypted_official_sample.xml")
    )
    assert resp.status == 200
    fields = reply_fields(wecom_crypto(settings), await resp.text())
    assert fields["ToUserName"] == "mycreate"
    assert "hello" in fields["Content"]  # the fallback hint quotes the text
    await client.app[RECORDER].flush()
    row = await InboundEvent.get()
    assert (row.dedupe_key, row.kind, row.sender) == (
        "wecom:wx5823bf96d3bd56c7:msg:4561255354251345929",
        "wecom:text",
        "mycreate",
    )


async def test_official_post_vector_is_stale_at_real_time(client: Any) -> None:
    resp = await client.post(
        "/wecom/corp", params=POST_QUERY, data=read_payload("wecom_encrypted_official_sample.xml")
    )
    assert resp.status == 403


async def test_staff_help_in_the_agent(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    text = read_payload("wecom_text.xml").replace("this is a test", "帮助")
    resp = await post_wecom(client, settings, text, timestamp=int(wall.now))
    fields = reply_fields(wecom_crypto(settings), await resp.text())
    assert "企业微信助手" in fields["Content"]


async def test_external_contact_events_answer_success_and_are_recorded(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    names = [
        "wecom_event_add_external_contact.xml",
        "wecom_event_edit_external_contact.xml",
        "wecom_event_del_external_contact.xml",
        "wecom_event_del_follow_user.xml",
        "wecom_event_change_external_chat_create.xml",
        "wecom_event_change_external_tag_create.xml",
    ]
    for name in names:
        resp = await post_wecom(client, settings, read_payload(name), timestamp=int(wall.now))
        assert resp.status == 200, name
        assert await resp.text() == "success"
    await client.app[RECORDER].flush()
    assert await InboundEvent.all().count() == len(names)


async def test_unknown_corp_is_404(client: Any) -> None:
    assert (await client.post("/wecom/other", data="<xml/>")).status == 404


async def test_wrong_corp_id_inside_ciphertext_is_400(
    make_client: AppMaker, wall: FakeWall, database: str
) -> None:
    raw = base_config(database)
    raw["wecom"]["corp_id"] = "wwSOMEONEELSE"
    sender = make_settings(raw)
    settings = make_settings(base_config(database))
    client = await make_client(settings)
    resp = await post_wecom(client, sender, read_payload("wecom_text.xml"), timestamp=int(wall.now))
    assert resp.status == 400
