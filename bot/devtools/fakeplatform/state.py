"""The fake platform's state: accounts, users, customers, tokens, deliveries, calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TOKEN_TTL = 7200
RETIRE_AFTER = 300  # a new token retires the previous one after 5 minutes


class FakeError(Exception):
    """An error answer: ``{"errcode": …, "errmsg": …}``."""

    def __init__(self, errcode: int, errmsg: str, **extra: Any) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.extra = extra


@dataclass
class IssuedToken:
    """One access token and the (platform, app, secret) it belongs to."""

    value: str
    owner: tuple[str, str, str]
    expires_at: float


@dataclass
class OAAccount:
    """An Official Account the fake knows."""

    appid: str
    secret: str
    type: str = "subscription"
    verified: bool = False
    template_quota: int = 100_000
    template_used: dict[str, int] = field(default_factory=dict)


@dataclass
class Window:
    """A member's customer-service windows (what the real platform tracks)."""

    message_at: float = -1e18
    sent_since_message: int = 0
    event_at: float = -1e18
    sent_since_event: int = 0


@dataclass
class OAUser:
    """A follower."""

    openid: str
    unionid: str = ""
    nickname: str = ""
    subscribe: int = 1
    subscribe_time: int = 0
    tags: set[int] = field(default_factory=set)
    window: Window = field(default_factory=Window)
    mass_received: dict[str, int] = field(default_factory=dict)


@dataclass
class Corp:
    """The WeCom corp."""

    corp_id: str
    agent_secret: str
    contact_secret: str
    agent_id: int


@dataclass
class Follow:
    """One staff member's relation with a customer."""

    userid: str
    remark: str = ""
    state: str = ""
    add_way: int = 1
    tags: list[str] = field(default_factory=list)
    createtime: int = 0


@dataclass
class Customer:
    """An external contact."""

    external_userid: str
    name: str
    unionid: str = ""
    follow: dict[str, Follow] = field(default_factory=dict)
    group_msgs_by_day: dict[str, int] = field(default_factory=dict)


@dataclass
class Delivery:
    """Something the platform delivered to a member or staff member."""

    seq: int
    to: str
    channel: str
    text: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)


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


@dataclass
class Failure:
    """An injected failure: the next ``times`` matching calls get ``errcode`` or a delay."""

    platform: str
    api: str
    times: int
    errcode: int = 0
    delay: float = 0.0

    def matches(self, platform: str, api: str) -> bool:
        """True for this platform and api (or any api)."""
        return self.times > 0 and self.platform == platform and self.api in ("*", api)
