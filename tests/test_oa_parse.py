"""Every official OA fixture parses into its wechatpy typed event, with its dedupe key."""

from __future__ import annotations

import pytest
from wechatpy import events, messages

from bot.wechat.oa_parse import oa_dedupe_key, parse_oa
from bot.wechat.xml import BadPayload, parse_xml
from tests.conftest import read_payload

CASES = [
    ("oa_text.xml", messages.TextMessage, "text", "oa:a:msg:1234567890123456"),
    ("oa_image.xml", messages.ImageMessage, "image", "oa:a:msg:1234567890123456"),
    ("oa_voice.xml", messages.VoiceMessage, "voice", None),
    ("oa_location.xml", messages.LocationMessage, "location", None),
    ("oa_link.xml", messages.LinkMessage, "link", None),
    ("oa_event_subscribe.xml", events.SubscribeEvent, "event:subscribe", None),
    ("oa_event_unsubscribe.xml", events.UnsubscribeEvent, "event:unsubscribe", None),
    ("oa_event_subscribe_qrscene.xml", events.SubscribeScanEvent, "event:subscribe", None),
    ("oa_event_scan.xml", events.ScanEvent, "event:scan", None),
    ("oa_event_location.xml", events.LocationEvent, "event:location", None),
    ("oa_event_click.xml", events.ClickEvent, "event:click", None),
    ("oa_event_view.xml", events.ViewEvent, "event:view", None),
    (
        "oa_event_templatesendjobfinish.xml",
        events.TemplateSendJobFinishEvent,
        "event:templatesendjobfinish",
        None,
    ),
    (
        "oa_event_masssendjobfinish.xml",
        events.MassSendJobFinishEvent,
        "event:masssendjobfinish",
        None,
    ),
    (
        "oa_encrypted_official_sample.xml",
        messages.TextMessage,
        "text",
        "oa:a:msg:6054768590064713728",
    ),
]


@pytest.mark.parametrize(("name", "cls", "kind", "key"), CASES, ids=[c[0] for c in CASES])
def test_fixture_parses(name: str, cls: type, kind: str, key: str | None) -> None:
    inbound = parse_oa("a", read_payload(name))
    assert type(inbound.event) is cls
    assert inbound.kind == kind
    assert inbound.platform == "oa"
    if key is not None:
        assert inbound.dedupe_key == key


def test_field_values() -> None:
    text = parse_oa("a", read_payload("oa_text.xml")).event
    assert (text.source, text.target, text.content, text.id) == (
        "fromUser",
        "toUser",
        "this is a test",
        1234567890123456,
    )
    scene = parse_oa("a", read_payload("oa_event_subscribe_qrscene.xml")).event
    assert (scene.scene_id, scene.ticket) == ("123123", "TICKET")
    scan = parse_oa("a", read_payload("oa_event_scan.xml")).event
    assert (scan.scene_id, scan.ticket) == ("SCENE_VALUE", "TICKET")
    click = parse_oa("a", read_payload("oa_event_click.xml")).event
    assert click.key == "EVENTKEY"
    loc = parse_oa("a", read_payload("oa_event_location.xml")).event
    assert (loc.latitude, loc.longitude) == (23.137466, 113.352425)
    mass = parse_oa("a", read_payload("oa_event_masssendjobfinish.xml")).event
    assert (mass.status, mass.total_count, mass.error_count) == ("err(30003)", 0, 0)


def test_event_keys_include_msgid_for_job_finish_events() -> None:
    one = read_payload("oa_event_templatesendjobfinish.xml")
    other = one.replace("200163836", "200163837")
    assert oa_dedupe_key("a", parse_xml(one)) != oa_dedupe_key("a", parse_xml(other))
    assert "200163836" in oa_dedupe_key("a", parse_xml(one))


def test_event_keys_differ_by_event_key_and_are_stable() -> None:
    click = read_payload("oa_event_click.xml")
    other = click.replace("EVENTKEY", "OTHERKEY")
    assert oa_dedupe_key("a", parse_xml(click)) == oa_dedupe_key("a", parse_xml(click))
    assert oa_dedupe_key("a", parse_xml(click)) != oa_dedupe_key("a", parse_xml(other))


def test_unknown_message_types_are_unknown_not_errors() -> None:
    body = (
        "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>hologram</MsgType><MsgId>9</MsgId></xml>"
    )
    assert type(parse_oa("a", body).event) is messages.UnknownMessage
    event = body.replace(
        "<MsgType>hologram</MsgType>", "<MsgType>event</MsgType><Event>warp</Event>"
    )
    assert type(parse_oa("a", event).event) is messages.UnknownMessage


@pytest.mark.parametrize(
    "body",
    [
        "<xml><FromUserName>f</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
        "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName><MsgType>text</MsgType></xml>",
        "<xml><ToUserName>t</ToUserName><FromUserName>f</FromUserName><CreateTime>x</CreateTime>"
        "<MsgType>text</MsgType></xml>",
        "<xml><ToUserName><a>nested</a></ToUserName><FromUserName>f</FromUserName>"
        "<CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
    ],
    ids=["no-to", "no-createtime", "bad-createtime", "nested-element"],
)
def test_bad_envelopes_raise_bad_payload(body: str) -> None:
    with pytest.raises(BadPayload):
        parse_oa("a", body)
