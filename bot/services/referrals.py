"""Referrals (邀请好友): a member's referral QR code, and the referrer's reward.

A member's referral QR is a temporary scene code ``ref_<member code>`` (at most 30 days).
Its ticket is cached a little less long than it lives, so it is re-issued once expired;
the image sent back is uploaded as temporary media (which lives 3 days) and cached too.

The reward: a follow through ``ref_<code>`` earns the referrer ``referral.points`` once
per *genuinely new* member. Genuinely new means this follow is the member's first ever
(the identity never followed before: re-subscribes never count) and either the member was
created by this very callback, or it has no ledger history and no referrer yet (someone
who wrote to the account before following). The member's own code never counts, nor an
unknown or inactive code. The first referrer recorded wins (``referred_by_id`` is set
once) and the ledger key ``referral:<member id>`` makes the reward happen at most once
per member ever, whatever WeChat retries.
https://developers.weixin.qq.com/doc/offiaccount/Account_Management/Generating_a_Parametric_QR_Code.html
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from bot.clients.errors import ApiError, NotSent, OutcomeUnknown
from bot.clients.registry import Clients
from bot.clock import BusinessClock, WallClock
from bot.config import Settings
from bot.context import MemberRef
from bot.services import points
from bot.services.notify import Notifier
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.repos import referrals as repo

log = logging.getLogger("bot.referrals")

REF_PREFIX = "ref_"
MEDIA_SECONDS = 3 * 86_400 - 3_600  # temporary media live 3 days; keep an hour in hand
API_ERRORS = (ApiError, NotSent, OutcomeUnknown)

Status = Literal["none", "disabled", "unknown", "self", "not_new", "rewarded"]


@dataclass(frozen=True, slots=True)
class ReferralOutcome:
    """What a follow through a referral scene did (``points`` awarded to the referrer)."""

    status: Status
    referrer_id: int | None = None
    points: int = 0


@dataclass(frozen=True, slots=True)
class Invite:
    """A member's referral QR: its ``showqrcode`` link ("" if none), the image's media_id."""

    code: str
    url: str = ""
    media_id: str = ""


def referral_code(scene: str) -> str:
    """The member code in a referral scene (``ref_<code>``), else ""."""
    return scene.removeprefix(REF_PREFIX) if scene.startswith(REF_PREFIX) else ""


def _margin(seconds: int) -> int:
    # Re-issue a little before the platform expires it: a tenth, at most an hour.
    return min(3_600, seconds // 10)


class ReferralService:
    """Rewards referrers and hands members their referral QR code."""

    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        keys: KeyBuilder,
        clock: BusinessClock,
        wall: WallClock,
        clients: Clients,
        notify: Notifier | None = None,
    ) -> None:
        self.notify = notify
        self.settings = settings
        self.cache = cache
        self.keys = keys
        self.clock = clock
        self.wall = wall
        self.clients = clients

    async def on_subscribe(
        self, member: MemberRef, scene: str, followed_before: bool
    ) -> ReferralOutcome:
        """Credit the referrer of a genuinely new member (at most once per member)."""
        code = referral_code(scene)
        if not code:
            return ReferralOutcome("none")
        if not self.settings.referral.enabled:
            return ReferralOutcome("disabled")
        referrer = await repo.active_member_by_code(code)
        if referrer is None:
            return ReferralOutcome("unknown")
        if referrer == member.id:
            return ReferralOutcome("self", referrer)
        if not await self._genuinely_new(member, followed_before):
            return ReferralOutcome("not_new", referrer)
        if not await repo.set_referrer(member.id, referrer):
            return ReferralOutcome("not_new", referrer)
        awarded = await self._reward(referrer, member.id)
        if awarded is not None:
            await self._tell_referrer(referrer, member.id, awarded)
        return ReferralOutcome("rewarded", referrer, awarded.amount if awarded else 0)

    async def _tell_referrer(
        self, referrer_id: int, member_id: int, awarded: points.LedgerResult
    ) -> None:
        """The referrer's service notice; a failure is logged (the points are credited)."""
        if self.notify is None:
            return
        variables = {"points": awarded.amount, "balance": awarded.balance}
        try:
            await self.notify.notify(
                referrer_id, "referral_rewarded", variables, key=f"referral:{member_id}"
            )
        except Exception:
            log.exception("referral notice failed", extra={"member_id": referrer_id})

    async def _genuinely_new(self, member: MemberRef, followed_before: bool) -> bool:
        if followed_before:
            return False
        if member.created:
            return True
        state = await repo.newcomer(member.id)
        return not state.has_ledger and state.referred_by_id is None

    async def _reward(self, referrer_id: int, member_id: int) -> points.LedgerResult | None:
        base = self.settings.referral.points
        if base <= 0:
            return None
        now = self.clock.now()
        result = await points.earn(
            referrer_id,
            base,
            f"referral:{member_id}",
            now=now,
            expires_at=points.lot_expiry(now, self.settings.tz),
            reason="邀请好友关注",
            source="referral",
            ref=f"member:{member_id}",
        )
        return None if result.duplicate else result

    async def invite(self, account: str, code: str) -> Invite:
        """The member's referral QR: image when it could be uploaded, else just the link."""
        oa = self.clients.oa(account)
        try:
            ticket = await self._ticket(account, code)
        except API_ERRORS as exc:
            log.warning("referral QR not issued", extra={"error": str(exc)})
            return Invite(code)
        url = oa.qrcode.show_url(ticket)
        try:
            media_id = await self._media(account, code, ticket)
        except API_ERRORS as exc:
            log.warning("referral QR image not uploaded", extra={"error": str(exc)})
            media_id = ""
        return Invite(code, url, media_id)

    async def _ticket(self, account: str, code: str) -> str:
        now = self.wall.time()
        cached = await self.cache.get(self.keys.invite_qr(account, code, 1))
        if cached:
            until, _, ticket = cached.partition("|")
            if now < float(until):
                return ticket
        seconds = self.settings.referral.qr_days * 86_400
        answer = await self.clients.oa(account).qrcode.temporary(REF_PREFIX + code, seconds)
        ticket = str(answer["ticket"])
        lives = int(answer.get("expire_seconds", seconds)) - _margin(seconds)
        await self.cache.put(self.keys.invite_qr(account, code, lives), f"{now + lives}|{ticket}")
        return ticket

    async def _media(self, account: str, code: str, ticket: str) -> str:
        now = self.wall.time()
        key = self.keys.invite_media(account, code, MEDIA_SECONDS)
        cached = await self.cache.get(key)
        if cached:
            until, for_ticket, media_id = cached.split("|", 2)
            if for_ticket == ticket and now < float(until):
                return media_id
        oa = self.clients.oa(account)
        image = await oa.qrcode.image(ticket)
        answer = await oa.media.upload("image", f"{REF_PREFIX}{code}.png", image)
        media_id = str(answer["media_id"])
        await self.cache.put(key, f"{now + MEDIA_SECONDS}|{ticket}|{media_id}")
        return media_id
