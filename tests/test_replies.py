"""Passive replies: text, one news article, transfer to customer service, success."""

from __future__ import annotations

from bot.replies import NO_REPLY, NewsReply, TextReply, TransferReply, render_reply
from bot.wechat.xml import parse_xml


def test_text_escapes_cdata_terminators() -> None:
    xml = render_reply(TextReply("a]]>b<![CDATA[c"), "oMember", "gh_brand", 1700000000)
    fields = parse_xml(xml)
    assert fields["Content"] == "a]]>b<![CDATA[c"
    assert (fields["ToUserName"], fields["FromUserName"], fields["MsgType"]) == (
        "oMember",
        "gh_brand",
        "text",
    )


def test_news_has_exactly_one_article() -> None:
    xml = render_reply(
        NewsReply("会员日", "双倍积分", "https://x/y", "https://x/p.png"), "o", "g", 1
    )
    fields = parse_xml(xml)
    assert fields["MsgType"] == "news"
    assert fields["ArticleCount"] == "1"
    item = fields["Articles"]["item"]
    assert (item["Title"], item["Url"], item["PicUrl"]) == (
        "会员日",
        "https://x/y",
        "https://x/p.png",
    )


def test_transfer_to_customer_service() -> None:
    assert parse_xml(render_reply(TransferReply(), "o", "g", 1))["MsgType"] == (
        "transfer_customer_service"
    )
    fields = parse_xml(render_reply(TransferReply("kf2001@gh"), "o", "g", 1))
    assert fields["TransInfo"]["KfAccount"] == "kf2001@gh"


def test_no_reply_is_success() -> None:
    assert render_reply(NO_REPLY, "o", "g", 1) == "success"
