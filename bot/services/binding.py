"""Binding a follower: the channel a scene stands for, and the unionid off the reply path.

A subscribe's reply never waits for the platform: the unionid is fetched by a background
task (``Background``), which then binds it to the member or, when another member already
holds it and the follower's member was created by this very follow with nothing of its
own, merges that fresh member into the holder. Members who both have history are never
merged automatically (a later issue reviews them); that case is logged.
https://developers.weixin.qq.com/doc/offiaccount/User_Management/Get_users_basic_information_UnionID.html
"""

from __future__ import annotations

import logging

from bot.background import Background
from bot.clients.errors import ApiError, NotSent, OutcomeUnknown
from bot.clients.registry import Clients
from bot.clock import BusinessClock
from bot.config import Settings
from bot.context import MemberRef
from bot.wechat.inbound import Inbound
from storage.cache import Cache
from storage.keys import KeyBuilder
from storage.models.members import OA_OPENID
from storage.repos import binding as repo
from storage.repos.binding import BindResult

log = logging.getLogger("bot.binding")

ORGANIC = "organic"


class BindingService:
    """Channels of new members and the unionid link (ONE-ID) of followers."""

    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        keys: KeyBuilder,
        clock: BusinessClock,
        clients: Clients,
        background: Background,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.keys = keys
        self.clock = clock
        self.clients = clients
        self.background = background

    def channel_of(self, scene: str) -> str:
        """The channel a scene stands for: configured, else ``qr:<scene>``; none → organic."""
        if not scene:
            return ORGANIC
        return self.settings.oa.scenes.get(scene, f"qr:{scene}")

    async def record_channel(self, member_id: int, scene: str) -> bool:
        """Record the scene's channel on a new member (an existing channel is kept)."""
        return await repo.set_channel_if_blank(member_id, self.channel_of(scene))

    def bind_later(self, inbound: Inbound, member: MemberRef) -> None:
        """Fetch and bind the follower's unionid in the background (the reply goes first)."""
        work = self.bind_unionid(inbound.account, inbound.sender, member, inbound.dedupe_key)
        self.background.spawn(work, name=f"unionid:{inbound.dedupe_key}")

    async def bind_unionid(
        self, account: str, openid: str, member: MemberRef, event_id: str = ""
    ) -> BindResult | None:
        """Ask the platform for the unionid and bind it; None when there is none to bind."""
        unionid = await self._fetch_unionid(account, openid, event_id)
        if not unionid:
            return None
        result = await repo.bind_unionid(member.id, unionid, self.clock.now(), fresh=member.created)
        if result.outcome == "merged":
            appid = self.settings.accounts[account].appid
            await self.cache.delete(self.keys.identity(OA_OPENID, appid, openid))
            log.info(
                "new follower merged into the unionid's member",
                extra={"event_id": event_id, "member_id": member.id, "into": result.holder_id},
            )
        elif result.outcome in ("conflict", "skipped"):
            log.info(
                "unionid held by another member; not merged automatically",
                extra={
                    "event_id": event_id,
                    "member_id": member.id,
                    "holder_id": result.holder_id,
                    "reason": result.reason,
                },
            )
        return result

    async def _fetch_unionid(self, account: str, openid: str, event_id: str) -> str:
        try:
            info = await self.clients.oa(account).user.info(openid)
        except (ApiError, NotSent, OutcomeUnknown) as exc:
            log.warning(
                "user info failed; unionid not bound",
                extra={"event_id": event_id, "error": str(exc)},
            )
            return ""
        return str(info.get("unionid") or "")
