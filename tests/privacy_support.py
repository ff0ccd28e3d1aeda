"""Chat helpers shared by the consent and erasure tests."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from bot.config import Settings
from tests.fakes import FakeWall
from tests.helpers import oa_crypto, oa_text, post_oa, reply_fields


async def say(
    client: TestClient[Any, Any], settings: Settings, wall: FakeWall, text: str, openid: str
) -> str:
    """Send a text as the member and return the reply's text."""
    wall.advance(1)
    resp = await post_oa(client, settings, oa_text(text, openid), timestamp=int(wall.now))
    return str(reply_fields(oa_crypto(settings), await resp.text())["Content"])


def click(openid: str, key: str, at: int) -> str:
    """A menu CLICK event as WeChat sends it (its dedupe key embeds the openid)."""
    return (
        f"<xml><ToUserName><![CDATA[gh_brand]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
