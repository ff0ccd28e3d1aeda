"""The fake's Official Account state: accounts, followers, windows, jobs, tickets, media."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.devtools.fake.wecom_state import CorpState

if TYPE_CHECKING:
    from bot.devtools.fake.sms import SmsMessage

NEVER = -1e18


@dataclass
class Window:
    """A member's customer-service windows, as the platform tracks them."""

    message_at: float = NEVER
    sent_since_message: int = 0
    event_at: float = NEVER
    sent_since_event: int = 0


@dataclass
class OAUser:
    """A follower (or former follower) of one account."""

    openid: str
    unionid: str = ""
    nickname: str = ""
    subscribe: int = 1
    subscribe_time: int = 0
    subscribe_scene: str = "ADD_SCENE_SEARCH"
    qr_scene: int = 0
    qr_scene_str: str = ""
    tags: list[int] = field(default_factory=list)
    window: Window = field(default_factory=Window)
    mass_by_month: dict[str, int] = field(default_factory=dict)


@dataclass
class MassJob:
    """One mass-send job: what the MASSSENDJOBFINISH event reports."""

    msg_id: int
    msg_data_id: int
    appid: str
    clientmsgid: str
    created_at: float
    total: int
    recipients: list[str]
    errors: int = 0

    @property
    def filter_count(self) -> int:
        """Members left after filtering (official: FilterCount = SentCount + ErrorCount)."""
        return len(self.recipients) + self.errors


@dataclass
class QrTicket:
    """A parameter QR code (``expires_at`` None: permanent)."""

    ticket: str
    appid: str
    scene: str
    expires_at: float | None


@dataclass
class Media:
    """An uploaded temporary media file (valid 3 days)."""

    media_id: str
    kind: str
    size: int
    created_at: float


@dataclass
class OAAccount:
    """An Official Account and everything the platform keeps for it."""

    appid: str
    secret: str
    type: str = "subscription"
    verified: bool = False
    template_quota: int = 100_000
    users: dict[str, OAUser] = field(default_factory=dict)
    tags: dict[int, str] = field(default_factory=lambda: {2: "星标组"})  # 2 is built in
    next_tag_id: int = 100
    template_by_day: dict[str, int] = field(default_factory=dict)
    mass_by_day: dict[str, int] = field(default_factory=dict)
    clientmsgids: dict[str, int] = field(default_factory=dict)
    media: dict[str, Media] = field(default_factory=dict)
    menu: list[Any] = field(default_factory=list)

    @property
    def is_verified_service(self) -> bool:
        """Template messages and openid mass sends need a verified service account."""
        return self.type == "service" and self.verified


@dataclass
class Delivery:
    """Something the platform delivered to a member, customer, group or staff member."""

    seq: int
    to: str
    channel: str
    text: str
    at: float
    via: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The control API's view."""
        return {
            "seq": self.seq,
            "to": self.to,
            "channel": self.channel,
            "text": self.text,
            "at": self.at,
            "via": self.via,
            "data": self.data,
        }


@dataclass
class Call:
    """One API call as received, and the errcode answered."""

    seq: int
    platform: str
    api: str
    query: dict[str, str]
    body: Any
    at: float
    errcode: int = 0

    def as_json(self) -> dict[str, Any]:
        """The control API's view."""
        return {
            "seq": self.seq,
            "platform": self.platform,
            "api": self.api,
            "query": self.query,
            "body": self.body,
            "at": self.at,
            "errcode": self.errcode,
        }


@dataclass
class Failure:
    """An injected failure: the next ``times`` matching calls get ``errcode`` and/or a delay."""

    platform: str
    api: str
    times: int
    errcode: int = 0
    errmsg: str = "injected failure"
    delay: float = 0.0

    def matches(self, platform: str, api: str) -> bool:
        """True for this platform and api (``*``: any api of the platform)."""
        return self.times > 0 and self.platform == platform and self.api in ("*", api)


@dataclass
class RateLimit:
    """A global rate limit on one API (``*``: every API of the platform): a token bucket
    of ``per_second`` tokens a second (holding one second's worth) on the fake's clock."""

    platform: str
    api: str
    per_second: float
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        """Take a token; False when the bucket is empty (the call is refused)."""
        if now > self.at:
            burst = max(1.0, self.per_second)
            self.tokens, self.at = min(burst, self.tokens + (now - self.at) * self.per_second), now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Hold:
    """Calls of one API wait until released: a slow platform on cue, without wall time."""

    platform: str
    api: str
    released: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    def release(self) -> None:
        """Let every held call (and later ones) through."""
        self.released.set()


@dataclass
class World:
    """All mutable state; ``reset`` replaces it with a freshly seeded one."""

    accounts: dict[str, OAAccount] = field(default_factory=dict)
    corps: dict[str, CorpState] = field(default_factory=dict)
    mass_jobs: dict[int, MassJob] = field(default_factory=dict)
    qr_tickets: dict[str, QrTicket] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    rate_limits: dict[tuple[str, str], RateLimit] = field(default_factory=dict)
    sms: list[SmsMessage] = field(default_factory=list)
    next_msg_id: int = 1_000_000_001
