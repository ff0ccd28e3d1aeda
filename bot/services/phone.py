"""Verified phone binding: 绑定手机 sends a one-time code, 验证 checks it (DESIGN §9).

A request validates the number, then (under the member's row lock) counts the member's
codes of the last hour, supersedes their pending code and stores a new one: only an
HMAC of the code, keyed with ``[security] mobile_hmac_key`` and bound to the row id. The
SMS leaves from a background task, so the reply never waits for the provider. The reply
is the same whether or not the number is registered.

A verified number ends one of three ways:

a. held by no member: stored on this member (``mobile.set_mobile``);
b. held by a member whose only identity is that number (created by an order or an
   import): merged into this member by the ``Merger`` (``bot.services.merge``); when it
   refuses, a ``MergeRequest`` keeps the case for staff instead;
c. held by a member with a chat identity: a pending ``MergeRequest`` for staff; nothing
   merges and this member's mobile is not set.

Every outcome writes an AuditLog row with actor ``member:<code>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.background import Background
from bot.config import Settings
from bot.services import mobile as mobile_service
from bot.services.pii import InvalidMobile, MissingKey, MobileVault
from bot.services.sms import SmsSender
from bot.templating import Renderer
from storage.models.members import MOBILE_HASH
from storage.repos import phone as repo
from storage.repos.phone import Audit
from storage.repos.profile import MobileTaken

if TYPE_CHECKING:
    from bot.context import MemberRef, Services

log = logging.getLogger("bot.phone")

CODE_DIGITS = 6
_CODE = re.compile(r"\d{6}")


class Merger(Protocol):
    """The merge engine (``bot.services.merge.merge_members``): raises MergeRefused."""

    async def __call__(
        self,
        survivor_id: int,
        merged_id: int,
        *,
        actor: str,
        reason: str,
        now: datetime,
        services: Any,
    ) -> Any:
        """Merge ``merged_id`` into ``survivor_id`` in one transaction; the MergeResult."""


@dataclass(frozen=True, slots=True)
class Requested:
    """The outcome of 绑定手机: ``state`` is sent, invalid, rate_limited or unavailable."""

    state: str
    mobile: str = ""  # masked
    minutes: int = 0


@dataclass(frozen=True, slots=True)
class Verified:
    """The outcome of 验证: ``state`` is bound, merged, review, wrong, locked, expired,
    none, invalid or unavailable."""

    state: str
    mobile: str = ""  # masked
    tries_left: int = 0


def new_code() -> str:
    """Six random digits from ``secrets``."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def _key_bytes(value: str) -> bytes:
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return bytes.fromhex(value)
    return base64.b64decode(value, validate=True)


class PhoneService:
    """Requests and checks one-time codes and settles a verified number."""

    def __init__(
        self,
        settings: Settings,
        renderer: Renderer,
        background: Background,
        sms: SmsSender,
        merger: Merger,
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.background = background
        self.sms = sms
        self.merger = merger
        self.vault = MobileVault.from_settings(settings.security)

    # --- codes --------------------------------------------------------------------

    def code_hash(self, verification_id: int, code: str) -> str:
        """HMAC-SHA256 (hex) of the code, keyed with the HMAC key and the row id."""
        raw = self.settings.security.mobile_hmac_key
        if not raw:
            raise MissingKey("mobile_hmac_key")
        key = hmac.new(_key_bytes(raw), f"phone-code:{verification_id}".encode(), hashlib.sha256)
        return hmac.new(key.digest(), code.encode(), hashlib.sha256).hexdigest()

    async def request(self, member: MemberRef, raw: str, now: datetime) -> Requested:
        """Send a code to ``raw`` for this member (same outcome whoever holds the number)."""
        rules = self.settings.sms
        try:
            number = self.vault.normalize(raw)
        except InvalidMobile:
            return Requested("invalid")
        masked = self.vault.mask(number)
        try:
            self.vault.require()
            cipher, digest = self.vault.encrypt(number), self.vault.lookup_hash(number)
        except MissingKey as exc:
            log.error("phone binding unavailable", extra={"key": exc.key})
            return Requested("unavailable")
        code = new_code()
        issued = await repo.issue(
            member.id,
            cipher,
            digest,
            lambda verification_id: self.code_hash(verification_id, code),
            now=now,
            ttl=timedelta(seconds=rules.code_ttl_seconds),
            per_hour=rules.max_requests_per_hour,
            audit=_audit(member, mobile=masked),
        )
        if issued is None:
            return Requested("rate_limited", masked)
        minutes = max(rules.code_ttl_seconds // 60, 1)
        text = self.renderer.render("sms_code", code=code, minutes=minutes)
        self.background.spawn(self._send(number, text), name=f"sms:{issued}")
        return Requested("sent", masked, minutes)

    async def _send(self, number: str, text: str) -> None:
        await self.sms.send(number, text)

    async def verify(
        self, member: MemberRef, code: str, now: datetime, services: Services
    ) -> Verified:
        """Check the member's latest code and settle the number on success."""
        code = code.strip()
        if not _CODE.fullmatch(code):
            return Verified("invalid")
        row = await repo.latest(member.id)
        if row is None or row.status in (repo.VERIFIED, repo.SUPERSEDED):
            return Verified("none")
        if row.status == repo.FAILED:
            return Verified("locked")
        audit = _audit(member)
        if row.status == repo.EXPIRED or row.expires_at <= now:
            await repo.close(int(row.id), repo.EXPIRED, now, audit)
            return Verified("expired")
        max_tries = self.settings.sms.max_tries
        used = await repo.take_try(int(row.id), max_tries)
        if used is None:
            await repo.close(int(row.id), repo.FAILED, now, audit)
            return Verified("locked")
        try:
            expected = self.code_hash(int(row.id), code)
        except MissingKey as exc:
            log.error("phone binding unavailable", extra={"key": exc.key})
            return Verified("unavailable")
        if not hmac.compare_digest(expected, row.code_hash):
            if used >= max_tries:
                await repo.close(int(row.id), repo.FAILED, now, audit)
                return Verified("locked")
            await repo.record("phone.code_wrong", now, audit, verification=int(row.id), tries=used)
            return Verified("wrong", tries_left=max_tries - used)
        if not await repo.close(int(row.id), repo.VERIFIED, now, audit):
            return Verified("none")  # another message settled this code meanwhile
        number = self.vault.decrypt(row.mobile_cipher)
        return await self._settle(member, number, row.mobile_hash, now, services)

    # --- a verified number ----------------------------------------------------------

    async def _settle(
        self, member: MemberRef, number: str, digest: str, now: datetime, services: Services
    ) -> Verified:
        masked = self.vault.mask(number)
        audit = _audit(member, mobile=masked)
        holder = await repo.holder_of(digest)
        if holder is None:
            try:
                await mobile_service.set_mobile(self.vault, member.id, number, now=now)
            except MobileTaken:
                holder = await repo.holder_of(digest)  # bound by someone else meanwhile
            else:
                await repo.record("phone.bound", now, audit, outcome="stored")
                return Verified("bound", masked)
        if holder is None:  # taken, yet no holder found: leave it to staff and the log
            log.error("verified number neither stored nor held", extra={"id": member.id})
            return Verified("unavailable", masked)
        if holder == member.id:
            await repo.record("phone.bound", now, audit, outcome="already")
            return Verified("bound", masked)
        codes = await repo.member_codes(holder)
        audit = _audit(member, mobile=masked, holder=codes.get(holder, str(holder)))
        if await repo.identity_kinds(holder) <= {MOBILE_HASH}:
            return await self._merge(member, holder, number, digest, now, audit, services)
        reason = "holder has a chat identity"
        await repo.request_merge(member.id, holder, digest, reason, now, audit)
        return Verified("review", masked)

    async def _merge(
        self,
        member: MemberRef,
        holder: int,
        number: str,
        digest: str,
        now: datetime,
        audit: Audit,
        services: Services,
    ) -> Verified:
        masked = self.vault.mask(number)
        try:
            await self.merger(
                member.id,
                holder,
                actor=audit.actor,
                reason="verified phone binding",
                now=now,
                services=services,
            )
        except Exception as exc:  # MergeRefused (or a failure): staff decide, nothing lost
            log.warning("phone merge refused", extra={"reason": str(exc)})
            await repo.request_merge(member.id, holder, digest, f"merge refused: {exc}", now, audit)
            return Verified("review", masked)
        await self._keep_number(member, number, now)
        await repo.record("phone.bound", now, audit, outcome="merged")
        return Verified("merged", masked)

    async def _keep_number(self, member: MemberRef, number: str, now: datetime) -> None:
        # The merge moved the number's identity; store it on the survivor if it is not.
        try:
            await mobile_service.set_mobile(self.vault, member.id, number, now=now)
        except MobileTaken:
            log.warning("merged number still held by the merged member", extra={"id": member.id})


def _audit(member: MemberRef, **detail: Any) -> Audit:
    return Audit(f"member:{member.code or member.id}", f"member:{member.id}", dict(detail))
