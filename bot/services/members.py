"""Members: every follower becomes one (ONE-ID), resolved on the hot path from a cache."""

from __future__ import annotations

from datetime import datetime

from bot.clock import BusinessClock
from bot.config import Settings
from bot.context import MemberRef
from bot.services.activity import ActivityRecorder
from bot.wechat.inbound import Inbound
from storage.cache import Cache
from storage.keys import Key, KeyBuilder
from storage.models import Member
from storage.models.members import OA_OPENID
from storage.repos import members as repo

# Events that open the 60 s customer-service window (subscribe is recorded by follow()).
WINDOW_EVENTS = frozenset({"event:scan", "event:click"})


class MemberService:
    """Find-or-create members by identity; follow state; activity."""

    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        keys: KeyBuilder,
        clock: BusinessClock,
        activity: ActivityRecorder,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.keys = keys
        self.clock = clock
        self.activity = activity

    def oa_identity(self, inbound: Inbound) -> tuple[str, str, str]:
        """(kind, app, value) of an OA sender: the openid under the account's AppID."""
        return OA_OPENID, self.settings.accounts[inbound.account].appid, inbound.sender

    def identity_key(self, inbound: Inbound) -> Key | None:
        """The identity-cache key :meth:`resolve` reads for this sender (None: it reads none).

        The sender gate reads it in the same cache round trip as its admission and hands
        the value to :meth:`resolve` as ``cached``.
        """
        if inbound.platform != "oa" or not inbound.from_member:
            return None
        if inbound.account not in self.settings.accounts:
            return None
        return self.keys.identity(*self.oa_identity(inbound))

    async def resolve(
        self, inbound: Inbound, cached: str | None = None, now: datetime | None = None
    ) -> MemberRef | None:
        """The OA sender's member, created on first contact; None for non-members.

        ``cached``: the sender's identity-cache value when already read (else it is read).
        ``now``: the callback's time, noted as the activity's (else the clock's): the same
        instant a sign-in writes as ``last_active_at``, so the activity flush after it has
        nothing left to write for that member.
        """
        if inbound.platform != "oa" or not inbound.from_member:
            return None
        identity = self.oa_identity(inbound)
        member = (
            _ref(cached) if cached is not None else await self._cached(identity)
        ) or await self._load(identity)
        is_message = not inbound.kind.startswith("event:")
        is_event = inbound.kind in WINDOW_EVENTS
        at = self.clock.now() if now is None else now
        self.activity.touch(identity, member.id, at, message=is_message, event=is_event)
        return member

    async def _cached(self, identity: tuple[str, str, str]) -> MemberRef | None:
        value = await self.cache.get(self.keys.identity(*identity))
        return None if value is None else _ref(value)

    async def _load(self, identity: tuple[str, str, str]) -> MemberRef:
        row = await repo.find_by_identity(*identity)
        if row is None:
            row = await repo.create_with_identity(*identity, now=self.clock.now())
        await self.cache.put(self.keys.identity(*identity), f"{row.id}:{row.code}")
        return MemberRef(row.id, row.code, row.created)

    async def follow(self, inbound: Inbound, followed: bool) -> bool:
        """Record subscribe or unsubscribe (nothing is deleted); True if it followed before."""
        return await repo.set_followed(*self.oa_identity(inbound), followed, self.clock.now())

    async def get(self, member_id: int) -> Member | None:
        """The member row."""
        return await repo.member_summary(member_id)


def _ref(value: str) -> MemberRef:
    """A member from its identity-cache value, ``"<id>:<code>"``."""
    member_id, _, code = value.partition(":")
    return MemberRef(int(member_id), code)
