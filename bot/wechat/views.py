"""Callback endpoints: ``/wechat/{account}`` (Official Accounts) and ``/wecom/{corp}``.

Order of checks (cheapest and most hostile first): Content-Length cap (413), the plain
signature over the query (OA, 403) before the body is read, timestamp freshness (403),
the body read under the cap (413), msg_signature (403), decryption and parsing (400).
WeChat always gets ``success``, a reply, or a 4xx — never a 500.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from urllib.parse import unquote_plus

from aiohttp import web

from bot.appkeys import INTAKE, METRICS, SERVICES
from bot.config import OfficialAccountSettings, WeComSettings
from bot.context import Services
from bot.wechat.crypto import CryptoError, MessageCrypto, signature_matches
from bot.wechat.inbound import Inbound
from bot.wechat.intake import SUCCESS
from bot.wechat.oa_parse import parse_oa
from bot.wechat.wecom_parse import parse_wecom
from bot.wechat.xml import BadPayload, envelope_ciphertext

log = logging.getLogger("bot.callback")


class Rejected(Exception):
    """A callback refused before dispatch, with the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Query:
    signature: str
    msg_signature: str
    timestamp: str
    nonce: str
    encrypted: bool

    @classmethod
    def of(cls, request: web.Request) -> _Query:
        q = query_params(request.query_string)
        return cls(
            signature=q.get("signature", ""),
            msg_signature=q.get("msg_signature", ""),
            timestamp=q.get("timestamp", ""),
            nonce=q.get("nonce", ""),
            encrypted=q.get("encrypt_type", "").lower() == "aes",
        )


_SIGNED = frozenset({"signature", "msg_signature", "timestamp", "nonce", "encrypt_type"})


def query_params(query_string: str) -> dict[str, str]:
    """The callback's signing parameters from the raw query string, as ``request.query``
    would give them (the first of a repeated name; ``+`` and ``%XX`` decoded), without
    building the whole MultiDict through yarl on every callback."""
    found: dict[str, str] = {}
    for part in query_string.split("&"):
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in _SIGNED and name not in found:
            found[name] = unquote_plus(value) if "%" in value or "+" in value else value
    return found


def _reject(request: web.Request, platform: str, exc: Rejected) -> web.Response:
    request.app[METRICS].rejected.labels(platform, exc.reason.split(":")[0]).inc()
    log.warning(
        "callback rejected",
        extra={
            "platform": platform,
            "status": exc.status,
            "reason": exc.reason,
            "path": request.path,
        },
    )
    return web.Response(status=exc.status, text=_STATUS_TEXT.get(exc.status, "rejected"))


_STATUS_TEXT = {400: "bad request", 403: "forbidden", 404: "not found", 413: "too large"}


def _check_length(request: web.Request, services: Services) -> None:
    limit = services.settings.server.body_limit
    if request.content_length is not None and request.content_length > limit:
        raise Rejected(413, "too_large")


async def _read_body(request: web.Request, services: Services) -> bytes:
    limit = services.settings.server.body_limit
    if request.content_length is not None:  # already checked against the cap
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16384):
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_fresh(services: Services, timestamp: str) -> None:
    try:
        sent = int(timestamp)
    except ValueError:
        raise Rejected(403, "stale: bad timestamp") from None
    if abs(services.wall.time() - sent) > services.settings.server.timestamp_tolerance_seconds:
        raise Rejected(403, "stale: timestamp outside the window")


@functools.lru_cache(maxsize=128)
def _crypto(token: str, key: str, receive_id: str, previous: str) -> MessageCrypto:
    # Built once per account: decoding the key and setting up the cipher is not free.
    return MessageCrypto(token, key, receive_id, previous)


def _decrypt_envelope(crypto: MessageCrypto, q: _Query, body: bytes) -> str:
    try:
        encrypt = envelope_ciphertext(body)
    except BadPayload as exc:
        raise Rejected(400, f"bad_envelope: {exc}") from None
    if not crypto.verify(q.msg_signature, q.timestamp, q.nonce, encrypt):
        raise Rejected(403, "bad_signature: msg_signature")
    try:
        return crypto.decrypt(encrypt)
    except CryptoError as exc:
        raise Rejected(400, f"bad_ciphertext: {exc}") from None


def _respond(plain: str, crypto: MessageCrypto | None, q: _Query) -> web.Response:
    if plain == SUCCESS or crypto is None:
        content_type = "text/plain" if plain == SUCCESS else "application/xml"
        return web.Response(text=plain, content_type=content_type)
    sealed = crypto.seal(plain, q.timestamp, q.nonce)
    return web.Response(text=sealed.to_xml(), content_type="application/xml")


async def _dispatch(app: web.Application, inbound: Inbound) -> str:
    return await app[INTAKE].handle(inbound)


# --- Official Accounts ---------------------------------------------------------------


def _account(request: web.Request, services: Services) -> tuple[str, OfficialAccountSettings]:
    name = request.match_info["account"]
    account = services.settings.accounts.get(name)
    if account is None:
        raise Rejected(404, "unknown_account")
    return name, account


async def oa_callback(request: web.Request) -> web.StreamResponse:
    """GET: URL verification; POST: a message or event from an Official Account."""
    app = request.app  # looked up once per request: a property, then the match info's
    try:
        services = app[SERVICES]
        name, account = _account(request, services)
        q = _Query.of(request)
        if request.method == "GET":
            return _oa_verify(request, account, q)
        return await _oa_post(request, app, services, name, account, q)
    except Rejected as exc:
        return _reject(request, "oa", exc)


def _oa_verify(request: web.Request, account: OfficialAccountSettings, q: _Query) -> web.Response:
    # URL verification always uses the plain signature and has no side effects, so it
    # needs no freshness check.
    if not signature_matches(q.signature, account.token, q.timestamp, q.nonce):
        raise Rejected(403, "bad_signature: signature")
    return web.Response(text=request.query.get("echostr", ""))


async def _oa_post(
    request: web.Request,
    app: web.Application,
    services: Services,
    name: str,
    account: OfficialAccountSettings,
    q: _Query,
) -> web.Response:
    _check_length(request, services)
    if not signature_matches(q.signature, account.token, q.timestamp, q.nonce):
        raise Rejected(403, "bad_signature: signature")
    _check_fresh(services, q.timestamp)
    body = await _read_body(request, services)
    crypto: MessageCrypto | None = None
    if q.encrypted:
        if not account.encoding_aes_key:
            raise Rejected(400, "bad_envelope: account has no EncodingAESKey")
        crypto = _crypto(
            account.token,
            account.encoding_aes_key,
            account.appid,
            account.previous_encoding_aes_key,
        )
        plaintext = _decrypt_envelope(crypto, q, body)
    else:
        if account.mode == "safe":
            raise Rejected(403, "plaintext_refused: account is in safe mode")
        await _check_replay(services, name, q, body)
        plaintext = _text(body)
    try:
        inbound = parse_oa(name, plaintext)
    except BadPayload as exc:
        raise Rejected(400, f"bad_payload: {exc}") from None
    return _respond(await _dispatch(app, inbound), crypto, q)


async def _check_replay(services: Services, account: str, q: _Query, body: bytes) -> None:
    # In plaintext mode the signature does not cover the body: a (timestamp, nonce) that
    # was already used with a different body is a replay.
    key = services.keys.nonce(account, q.timestamp, q.nonce)
    digest = hashlib.sha256(body).hexdigest()
    if await services.cache.claim(key, digest):
        return
    if await services.cache.get(key) != digest:
        raise Rejected(403, "replay: nonce reused with another body")


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "bad_payload: body is not UTF-8") from None


# --- WeCom ---------------------------------------------------------------------------


def _corp(request: web.Request, services: Services) -> WeComSettings:
    wecom = services.settings.wecom
    if wecom is None or request.match_info["corp"] not in (wecom.name, wecom.corp_id):
        raise Rejected(404, "unknown_corp")
    return wecom


def _wecom_crypto(wecom: WeComSettings) -> MessageCrypto:
    return _crypto(
        wecom.token, wecom.encoding_aes_key, wecom.corp_id, wecom.previous_encoding_aes_key
    )


async def wecom_callback(request: web.Request) -> web.StreamResponse:
    """GET: URL verification (decrypt echostr); POST: an encrypted WeCom callback."""
    app = request.app
    try:
        services = app[SERVICES]
        wecom = _corp(request, services)
        q = _Query.of(request)
        crypto = _wecom_crypto(wecom)
        if request.method == "GET":
            return _wecom_verify(request, crypto, q)
        return await _wecom_post(request, app, services, wecom, crypto, q)
    except Rejected as exc:
        return _reject(request, "wecom", exc)


def _wecom_verify(request: web.Request, crypto: MessageCrypto, q: _Query) -> web.Response:
    # A '+' in echostr arrives as a space when the caller did not percent-encode it.
    echostr = request.query.get("echostr", "").replace(" ", "+")
    if not crypto.verify(q.msg_signature, q.timestamp, q.nonce, echostr):
        raise Rejected(403, "bad_signature: msg_signature")
    try:
        return web.Response(text=crypto.decrypt(echostr))
    except CryptoError as exc:
        raise Rejected(400, f"bad_ciphertext: {exc}") from None


async def _wecom_post(
    request: web.Request,
    app: web.Application,
    services: Services,
    wecom: WeComSettings,
    crypto: MessageCrypto,
    q: _Query,
) -> web.Response:
    _check_length(request, services)
    _check_fresh(services, q.timestamp)
    body = await _read_body(request, services)
    plaintext = _decrypt_envelope(crypto, q, body)
    try:
        inbound = parse_wecom(wecom.name, wecom.corp_id, plaintext)
    except BadPayload as exc:
        raise Rejected(400, f"bad_payload: {exc}") from None
    return _respond(await _dispatch(app, inbound), crypto, q)
