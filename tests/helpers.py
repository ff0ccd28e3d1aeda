"""Small helpers shared by the callback tests."""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from bot.config import Settings
from bot.devtools.signer import open_reply, sign_oa, sign_wecom
from bot.wechat.crypto import MessageCrypto
from bot.wechat.xml import parse_xml
from storage.cache import Cache, CacheError
from storage.keys import Key

_msg_ids = itertools.count(10_000_000_000)


def oa_text(content: str, openid: str = "oMember1", msg_id: int | None = None, at: int = 0) -> str:
    """A text message as WeChat sends it."""
    mid = next(_msg_ids) if msg_id is None else msg_id
    return (
        "<xml><ToUserName><![CDATA[gh_brand]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{at}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
        f"<MsgId>{mid}</MsgId></xml>"
    )


async def post_oa(
    client: TestClient[Any, Any],
    settings: Settings,
    plaintext: str,
    *,
    account: str = "brand",
    timestamp: int,
    nonce: str | None = None,
) -> ClientResponse:
    """Sign (and encrypt, per the account's mode) and post an OA callback."""
    signed = sign_oa(settings.accounts[account], plaintext, timestamp, nonce)
    return await client.post(f"/wechat/{account}", params=signed.query, data=signed.body)


async def post_wecom(
    client: TestClient[Any, Any],
    settings: Settings,
    plaintext: str,
    *,
    timestamp: int,
    nonce: str | None = None,
) -> ClientResponse:
    """Encrypt, sign and post a WeCom callback."""
    assert settings.wecom is not None
    signed = sign_wecom(settings.wecom, plaintext, timestamp, nonce)
    return await client.post(f"/wecom/{settings.wecom.name}", params=signed.query, data=signed.body)


def oa_crypto(settings: Settings, account: str = "brand") -> MessageCrypto:
    """The account's crypto, to open encrypted replies."""
    acc = settings.accounts[account]
    return MessageCrypto(acc.token, acc.encoding_aes_key, acc.appid)


def wecom_crypto(settings: Settings) -> MessageCrypto:
    """The corp's crypto."""
    assert settings.wecom is not None
    w = settings.wecom
    return MessageCrypto(w.token, w.encoding_aes_key, w.corp_id)


def reply_fields(crypto: MessageCrypto | None, body: str) -> dict[str, Any]:
    """The reply's XML fields (decrypting when needed)."""
    plain = open_reply(crypto, body) if crypto is not None else body
    return parse_xml(plain)


async def lock_is_free(cache: Cache, lock: Key) -> bool:
    """True when the lock can be taken at once (it is taken and released again)."""
    try:
        async with cache.lock(lock, 0.01):
            return True
    except CacheError:
        return False
