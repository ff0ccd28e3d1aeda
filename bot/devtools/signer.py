"""Sign and encrypt callbacks exactly as WeChat's servers do (simulator, tests, bench)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from bot.config import OfficialAccountSettings, WeComSettings
from bot.wechat.crypto import MessageCrypto, sha1_signature
from bot.wechat.xml import parse_xml, require_text


@dataclass(frozen=True, slots=True)
class SignedCallback:
    """The query string and body of one callback request."""

    query: dict[str, str]
    body: str


def new_nonce() -> str:
    """A numeric nonce like WeChat's."""
    return str(secrets.randbelow(10**10))


def sign_oa(
    account: OfficialAccountSettings,
    plaintext: str,
    timestamp: int,
    nonce: str | None = None,
    *,
    encrypt: bool | None = None,
    openid: str = "",
) -> SignedCallback:
    """An OA callback: plain signature always; AES envelope unless the account is plaintext."""
    nonce = nonce or new_nonce()
    ts = str(timestamp)
    use_aes = account.mode != "plaintext" if encrypt is None else encrypt
    query = {
        "signature": sha1_signature(account.token, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
    }
    if openid:
        query["openid"] = openid
    if not use_aes:
        return SignedCallback(query, plaintext)
    crypto = MessageCrypto(account.token, account.encoding_aes_key, account.appid)
    encrypted = crypto.encrypt(plaintext)
    to_user = require_text(parse_xml(plaintext), "ToUserName")
    body = (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )
    query["encrypt_type"] = "aes"
    query["msg_signature"] = sha1_signature(account.token, ts, nonce, encrypted)
    return SignedCallback(query, body)


def sign_wecom(
    wecom: WeComSettings, plaintext: str, timestamp: int, nonce: str | None = None
) -> SignedCallback:
    """A WeCom callback: always encrypted, signed with msg_signature."""
    nonce = nonce or new_nonce()
    ts = str(timestamp)
    crypto = MessageCrypto(wecom.token, wecom.encoding_aes_key, wecom.corp_id)
    encrypted = crypto.encrypt(plaintext)
    body = (
        f"<xml><ToUserName><![CDATA[{wecom.corp_id}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        f"<AgentID><![CDATA[{wecom.agent_id}]]></AgentID></xml>"
    )
    query = {
        "msg_signature": sha1_signature(wecom.token, ts, nonce, encrypted),
        "timestamp": ts,
        "nonce": nonce,
    }
    return SignedCallback(query, body)


def open_reply(crypto: MessageCrypto, body: str) -> str:
    """Decrypt an encrypted passive reply (checking its signature); plain bodies pass through."""
    if "<Encrypt>" not in body:
        return body
    data = parse_xml(body)
    encrypt = require_text(data, "Encrypt")
    if not crypto.verify(
        require_text(data, "MsgSignature"),
        require_text(data, "TimeStamp"),
        require_text(data, "Nonce"),
        encrypt,
    ):
        raise ValueError("reply signature does not match")
    return crypto.decrypt(encrypt)
