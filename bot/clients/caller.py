"""Token-bearing API calls with each platform's error policy.

Error codes differ by platform (DESIGN §7):
- OA 40001/42001/40014: the token was rejected → refresh once (for all processes), retry.
- OA 45009: a **daily** quota → pause that API for that account until business midnight.
- OA 45011 (minute quota), WeCom 45009/45033, and -1 (busy) → back off and retry.
- WeCom 40001: a bad secret → no retry; logged as an alert.
An error answer proves nothing was done, so those retries are safe on every API; an
unknown outcome (timeout, 5xx) is retried only for idempotent calls.

Inside :func:`single_attempt` (the outbound sender) a call makes one attempt and raises
what it got: the sender puts the row back with a due time instead of sleeping in-process,
and its token buckets set the pace.
https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code.html
https://developer.work.weixin.qq.com/document/path/90313
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.clients.errors import ApiError, BadSecret, NotSent, OutcomeUnknown, QuotaExhausted
from bot.clients.tokens import TokenCache, TokenKey
from bot.clients.transport import Transport
from bot.clock import BusinessClock
from bot.coalesce import Coalescer
from storage.cache import Cache
from storage.keys import KeyBuilder

log = logging.getLogger("bot.clients")
Sleep = Callable[[float], Awaitable[None]]
_SINGLE_ATTEMPT: ContextVar[bool] = ContextVar("single_attempt", default=False)


@contextlib.contextmanager
def single_attempt() -> Iterator[None]:
    """Calls made inside (this task) are tried once: no back-off sleeps, no retries.

    A rejected token is still refreshed and the call repeated: that answer proves nothing
    was done.
    """
    reset = _SINGLE_ATTEMPT.set(True)
    try:
        yield
    finally:
        _SINGLE_ATTEMPT.reset(reset)


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """How one platform's error codes are handled."""

    platform: str
    token_codes: frozenset[int]
    backoff_codes: frozenset[int]
    daily_quota_codes: frozenset[int]
    bad_secret_codes: frozenset[int]


OA_POLICY = ErrorPolicy(
    "oa",
    token_codes=frozenset({40001, 42001, 40014}),
    backoff_codes=frozenset({45011, -1}),
    daily_quota_codes=frozenset({45009}),
    bad_secret_codes=frozenset({40125}),
)
WECOM_POLICY = ErrorPolicy(
    "wecom",
    token_codes=frozenset({42001, 40014}),
    backoff_codes=frozenset({45009, 45033, -1}),
    daily_quota_codes=frozenset(),
    bad_secret_codes=frozenset({40001}),
)


class PauseBook:
    """APIs paused per account until business midnight after a daily quota ran out."""

    def __init__(self, cache: Cache, keys: KeyBuilder, clock: BusinessClock) -> None:
        self.cache = cache
        self.keys = keys
        self.clock = clock
        self._reads: dict[str, Coalescer[str, bool]] = {}

    def _key(self, platform: str, app_id: str, api: str) -> Any:
        now = self.clock.now()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
        return self.keys.api_pause(platform, app_id, api, int((midnight - now).total_seconds()))

    async def pause(self, platform: str, app_id: str, api: str) -> None:
        """Pause until the next business midnight."""
        await self.cache.put(self._key(platform, app_id, api), "1")

    async def paused(self, platform: str, app_id: str, api: str) -> bool:
        """True while paused (calls asking at the same time share one read)."""
        key = self._key(platform, app_id, api)
        reads = self._reads.get(key.name)
        if reads is None:

            async def read(items: list[str]) -> list[bool]:
                found = await self.cache.get(key) is not None
                return [found] * len(items)

            reads = self._reads[key.name] = Coalescer(read)
        return await reads.submit(key.name)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who calls: the token key plus how to fetch a new token."""

    key: TokenKey
    fetch: Callable[[], Awaitable[tuple[str, int]]]


class ApiCaller:
    """Calls one platform's APIs for one app/secret, applying its error policy."""

    def __init__(
        self,
        transport: Transport,
        tokens: TokenCache,
        credentials: Credentials,
        policy: ErrorPolicy,
        pauses: PauseBook,
        sleep: Sleep = asyncio.sleep,
        retries: int = 3,
    ) -> None:
        self.transport = transport
        self.tokens = tokens
        self.credentials = credentials
        self.policy = policy
        self.pauses = pauses
        self.sleep = sleep
        self.retries = retries

    @property
    def app_id(self) -> str:
        """The AppID or CorpID."""
        return self.credentials.key.app_id

    async def call(
        self,
        method: str,
        api: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        files: Mapping[str, tuple[str, bytes]] | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """Call an API with the shared token; see the module docstring for retries."""
        if await self.pauses.paused(self.policy.platform, self.app_id, api):
            raise QuotaExhausted(self.policy.platform, api, 45009, "paused until midnight")
        token = await self.token()
        refreshed = False
        attempt = 0
        retries = 0 if _SINGLE_ATTEMPT.get() else self.retries
        while True:
            query = {**(params or {}), "access_token": token}
            try:
                return await self.transport.request(
                    method, api, params=query, json=json, files=files
                )
            except ApiError as exc:
                if exc.errcode in self.policy.token_codes and not refreshed:
                    token = await self.tokens.invalidate(self.credentials.key, token, self._fetch)
                    refreshed = True
                    continue
                await self._raise_final(exc)
                if attempt >= retries:
                    raise
            except NotSent:
                if attempt >= retries:
                    raise
            except OutcomeUnknown:
                if not idempotent or attempt >= retries:
                    raise
            await self.sleep(0.5 * 2**attempt)
            attempt += 1

    async def _raise_final(self, exc: ApiError) -> None:
        """Raise at once for codes that no retry can fix; return for retryable ones."""
        policy = self.policy
        if exc.errcode in policy.daily_quota_codes:
            await self.pauses.pause(policy.platform, self.app_id, exc.api)
            raise QuotaExhausted(exc.platform, exc.api, exc.errcode, exc.errmsg, exc.body) from exc
        if exc.errcode not in policy.backoff_codes:
            raise exc

    async def token(self) -> str:
        """A fresh shared token."""
        return await self.tokens.get(self.credentials.key, self._fetch)

    async def _fetch(self) -> tuple[str, int]:
        try:
            return await self.credentials.fetch()
        except ApiError as exc:
            if exc.errcode in self.policy.bad_secret_codes:
                log.error(
                    "ALERT: the platform rejected the app secret; fix the configuration",
                    extra={"platform": exc.platform, "app_id": self.app_id, "errcode": exc.errcode},
                )
                raise BadSecret(exc.platform, exc.api, exc.errcode, exc.errmsg, exc.body) from exc
            raise
