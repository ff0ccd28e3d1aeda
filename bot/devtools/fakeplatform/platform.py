"""FakePlatform: the state and the rules shared by the OA, WeCom and control routes."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings
from bot.devtools.fakeplatform.state import (
    RETIRE_AFTER,
    TOKEN_TTL,
    Call,
    Corp,
    Customer,
    Delivery,
    Failure,
    FakeError,
    Follow,
    IssuedToken,
    OAAccount,
    OAUser,
)


@dataclass
class TagGroup:
    """A corp tag group with its tags (id → name)."""

    group_id: str
    name: str
    order: int
    tags: dict[str, str] = field(default_factory=dict)
    created: int = 0


class FakePlatform:
    """Everything the fake WeChat and WeCom platforms know, with an injectable clock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.offset = 0.0
        self.seq = itertools.count(1)
        self.accounts: dict[str, OAAccount] = {}
        self.users: dict[str, dict[str, OAUser]] = {}
        self.corp: Corp | None = None
        self.customers: dict[str, Customer] = {}
        self.staff: list[str] = []
        self.tag_groups: dict[str, TagGroup] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.token_issues: dict[tuple[str, str, str], int] = {}
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self.failures: list[Failure] = []
        self.extra: dict[str, Any] = {}

    # --- time ---------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock (real time plus any control-API offset)."""
        return self._clock() + self.offset

    def day(self) -> str:
        """The current day bucket (UTC+8, like the platform's quotas)."""
        return time.strftime("%Y-%m-%d", time.gmtime(self.now() + 8 * 3600))

    # --- accounts and fixtures ----------------------------------------------------

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.time
    ) -> FakePlatform:
        """A platform knowing every configured account and corp, with fixture data."""
        platform = cls(clock)
        for acc in settings.accounts.values():
            platform.add_account(OAAccount(acc.appid, acc.secret, acc.type, acc.verified))
        if settings.wecom is not None:
            w = settings.wecom
            platform.corp = Corp(w.corp_id, w.agent_secret, w.contact_secret, w.agent_id)
            from bot.devtools.fakeplatform.fixtures import add_wecom_fixtures

            add_wecom_fixtures(platform)
        return platform

    def add_account(self, account: OAAccount) -> None:
        """Register an Official Account with three fixture followers."""
        self.accounts[account.appid] = account
        users = self.users.setdefault(account.appid, {})
        for i in range(1, 4):
            users[f"oUser{i}"] = OAUser(f"oUser{i}", f"uUnion{i}", f"粉丝{i}", 1, int(self.now()))

    def user(self, appid: str, openid: str, create: bool = False) -> OAUser:
        """A follower; unknown openids are created on interaction, else 40003."""
        users = self.users.setdefault(appid, {})
        if openid not in users:
            if not create:
                raise FakeError(40003, "invalid openid")
            users[openid] = OAUser(openid, f"u{openid}", openid, 1, int(self.now()))
        return users[openid]

    # --- tokens -------------------------------------------------------------------

    def issue_token(self, owner: tuple[str, str, str]) -> IssuedToken:
        """A new token; the owner's previous tokens die 5 minutes from now."""
        now = self.now()
        for token in self.tokens.values():
            if token.owner == owner:
                token.expires_at = min(token.expires_at, now + RETIRE_AFTER)
        token = IssuedToken(secrets.token_urlsafe(24), owner, now + TOKEN_TTL)
        self.tokens[token.value] = token
        self.token_issues[owner] = self.token_issues.get(owner, 0) + 1
        return token

    def check_token(self, value: str, invalid: int) -> IssuedToken:
        """The token's record; ``invalid`` for unknown, 42001 for expired."""
        token = self.tokens.get(value)
        if token is None:
            raise FakeError(invalid, "invalid credential, access_token is invalid or not latest")
        if token.expires_at <= self.now():
            raise FakeError(42001, "access_token expired")
        return token

    def expire_tokens(self) -> None:
        """Every token expires now."""
        for token in self.tokens.values():
            token.expires_at = self.now()

    # --- failures, calls, deliveries ----------------------------------------------

    def take_failure(self, platform: str, api: str) -> Failure | None:
        """The first injected failure matching this call (consumed)."""
        for failure in self.failures:
            if failure.matches(platform, api):
                failure.times -= 1
                return failure
        return None

    def record(self, platform: str, api: str, query: dict[str, str], body: Any) -> Call:
        """Record an incoming call."""
        clean = {
            k: v for k, v in query.items() if k not in ("access_token", "secret", "corpsecret")
        }
        call = Call(next(self.seq), platform, api, clean, body, self.now())
        self.calls.append(call)
        return call

    def deliver(self, to: str, channel: str, text: str, **data: Any) -> Delivery:
        """Record something delivered to a member or staff member."""
        item = Delivery(next(self.seq), to, channel, text, self.now(), dict(data))
        self.deliveries.append(item)
        return item

    def delivered_to(self, to: str, since: int = 0) -> list[Delivery]:
        """Deliveries to one recipient after a sequence number."""
        return [d for d in self.deliveries if d.to == to and d.seq > since]

    # --- WeCom helpers --------------------------------------------------------------

    def customer(self, external_userid: str) -> Customer:
        """A customer, else 84061 (not an external contact)."""
        customer = self.customers.get(external_userid)
        if customer is None:
            raise FakeError(84061, "not external contact")
        return customer

    def follow(self, userid: str, external_userid: str) -> Follow:
        """A staff–customer relation, else 84061."""
        follow = self.customer(external_userid).follow.get(userid)
        if follow is None:
            raise FakeError(84061, "not external contact")
        return follow

    def tag_ids(self) -> set[str]:
        """Every corp tag id."""
        return {tag_id for group in self.tag_groups.values() for tag_id in group.tags}
