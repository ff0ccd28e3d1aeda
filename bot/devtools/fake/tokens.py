"""access_token issuing and checking, per (platform, app or corp, secret).

OA: a token lives 7200 s; fetching a new one leaves the previous valid for 5 more minutes.
https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html
WeCom: tokens are per (corp, secret); the agent and 客户联系 secrets give different tokens.
https://developer.work.weixin.qq.com/document/path/91039
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass

from bot.devtools.fake.common import FakeError

TOKEN_TTL = 7200
RETIRE_AFTER = 300  # a new token retires the previous ones after 5 minutes
FORGET_AFTER = 86_400  # long-dead tokens are forgotten (then they are simply invalid)


@dataclass
class IssuedToken:
    """One access token: whose it is, what it may call, when it dies."""

    value: str
    platform: str
    app_id: str
    secret: str
    scopes: frozenset[str]
    expires_at: float


class TokenBook:
    """Every token issued, and how many were issued per owner."""

    def __init__(self) -> None:
        self.tokens: dict[str, IssuedToken] = {}
        self.issued: Counter[tuple[str, str, str]] = Counter()

    def issue(
        self, platform: str, app_id: str, secret: str, scopes: frozenset[str], now: float
    ) -> IssuedToken:
        """A new token; the owner's older tokens now die within 5 minutes."""
        self._forget(now)
        for token in self._owned(platform, app_id, secret):
            token.expires_at = min(token.expires_at, now + RETIRE_AFTER)
        value = secrets.token_urlsafe(48)
        token = IssuedToken(value, platform, app_id, secret, scopes, now + TOKEN_TTL)
        self.tokens[value] = token
        self.issued[(platform, app_id, secret)] += 1
        return token

    def check(self, platform: str, value: str, now: float) -> IssuedToken:
        """The live token, or the platform's error for a missing, unknown or dead one."""
        if not value:
            raise FakeError(41001, "access_token missing")
        token = self.tokens.get(value)
        if token is None or token.platform != platform:
            if platform == "oa":
                raise FakeError(40001, "invalid credential, access_token is invalid or not latest")
            raise FakeError(40014, "invalid access_token")
        if now >= token.expires_at:
            raise FakeError(42001, "access_token expired")
        return token

    def expire_all(self, now: float) -> None:
        """Every token dies now (the next call answers 42001)."""
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now)

    def count(self, platform: str, app_id: str, secret: str | None = None) -> int:
        """How many tokens were issued to an app (and secret, for WeCom)."""
        return sum(
            n
            for (p, app, sec), n in self.issued.items()
            if p == platform and app == app_id and secret in (None, sec)
        )

    def _owned(self, platform: str, app_id: str, secret: str) -> list[IssuedToken]:
        owner = (platform, app_id, secret)
        return [t for t in self.tokens.values() if (t.platform, t.app_id, t.secret) == owner]

    def _forget(self, now: float) -> None:
        dead = [v for v, t in self.tokens.items() if t.expires_at < now - FORGET_AFTER]
        for value in dead:
            del self.tokens[value]
