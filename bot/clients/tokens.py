"""access_token shared by every process, with exactly one refresher at a time.

A token lasts 7200 s and a new one retires the old after 5 minutes, so two processes
that each fetch would retire each other's token. With Redis the token lives there and a
Redis lock elects the refresher; without Redis a ``platform_token`` row does, through a
conditional update that takes a short lease. In-process, concurrent callers share one
flight. https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tortoise.exceptions import IntegrityError

from storage.cache import Cache, CacheError
from storage.keys import KeyBuilder
from storage.models import PlatformToken

# Refresh this long before expiry, so a token is never used in its last minutes.
EARLY_REFRESH = 300.0
LEASE_SECONDS = 30.0
Fetch = Callable[[], Awaitable[tuple[str, int]]]
Now = Callable[[], float]


class TokenUnavailable(RuntimeError):
    """No token could be had (the refresher did not finish in time)."""


@dataclass(frozen=True, slots=True)
class TokenKey:
    """Which token: per platform, app/corp id and secret (WeCom secrets differ per API)."""

    platform: str
    app_id: str
    secret: str

    @property
    def name(self) -> str:
        """A stable name that never contains the secret itself."""
        digest = hashlib.sha256(self.secret.encode()).hexdigest()[:12]
        return f"{self.platform}:{self.app_id}:{digest}"


@dataclass(frozen=True, slots=True)
class Token:
    """A token and when it expires (epoch seconds)."""

    value: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        """Usable without refreshing."""
        return bool(self.value) and self.expires_at - EARLY_REFRESH > now


class TokenStore(Protocol):
    """Where tokens live and how one refresher is elected."""

    async def read(self, key: TokenKey) -> Token | None:
        """The stored token, if any."""

    async def refresh(self, key: TokenKey, stale: str | None, fetch: Fetch, now: Now) -> Token:
        """Replace ``stale`` (or a missing/expiring token) unless another process already did."""


class TokenCache:
    """Hands out tokens; refreshes through the store with in-process single flight."""

    def __init__(self, store: TokenStore, now: Now = time.time, memo_seconds: float = 0.0) -> None:
        self.store = store
        self.now = now
        self.memo_seconds = memo_seconds
        self._memo: dict[str, tuple[Token, float]] = {}
        self._flights: dict[str, asyncio.Future[Token]] = {}

    async def get(self, key: TokenKey, fetch: Fetch) -> str:
        """A fresh token.

        With ``memo_seconds`` a token read from the store is reused in-process for that long
        (the outbound sender's calls would otherwise read the store once each): safe while
        it is shorter than the 5 minutes a replaced token keeps working, and a rejected
        token is refreshed at once (:meth:`invalidate`).
        """
        now = self.now()
        memo = self._memo.get(key.name)
        if memo is not None and memo[1] > now and memo[0].fresh(now):
            return memo[0].value
        token = await self.store.read(key)
        if token is not None and token.fresh(now):
            self._remember(key, token, now)
            return token.value
        return await self._refresh(key, token.value if token else None, fetch)

    def _remember(self, key: TokenKey, token: Token, now: float) -> None:
        if self.memo_seconds > 0:
            self._memo[key.name] = (token, now + self.memo_seconds)

    async def invalidate(self, key: TokenKey, stale: str, fetch: Fetch) -> str:
        """The platform rejected ``stale``: get a new one (once for all processes)."""
        self._memo.pop(key.name, None)
        return await self._refresh(key, stale, fetch)

    async def _refresh(self, key: TokenKey, stale: str | None, fetch: Fetch) -> str:
        flight = self._flights.get(key.name)
        if flight is not None:
            return (await asyncio.shield(flight)).value
        flight = asyncio.get_running_loop().create_future()
        self._flights[key.name] = flight
        try:
            token = await self.store.refresh(key, stale, fetch, self.now)
            self._remember(key, token, self.now())
            flight.set_result(token)
            return token.value
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: waiters re-raise it, nobody logs it unretrieved
            raise
        finally:
            del self._flights[key.name]


def _usable(token: Token | None, stale: str | None, now: float) -> bool:
    return token is not None and token.value != stale and token.fresh(now)


class RedisTokenStore:
    """Tokens in the shared cache; a cache lock elects the refresher."""

    def __init__(self, cache: Cache, keys: KeyBuilder, wait: float = 15.0) -> None:
        self.cache = cache
        self.keys = keys
        self.wait = wait

    async def read(self, key: TokenKey) -> Token | None:
        """The cached token."""
        raw = await self.cache.get(self.keys.token(key.name))
        if raw is None:
            return None
        data = json.loads(raw)
        return Token(str(data["value"]), float(data["expires_at"]))

    async def refresh(self, key: TokenKey, stale: str | None, fetch: Fetch, now: Now) -> Token:
        """Under the lock: reuse a token another process just stored, else fetch one."""
        try:
            async with self.cache.lock(self.keys.token_lock(key.name), self.wait):
                current = await self.read(key)
                if _usable(current, stale, now()):
                    assert current is not None
                    return current
                value, expires_in = await fetch()
                token = Token(value, now() + expires_in)
                payload = json.dumps({"value": value, "expires_at": token.expires_at})
                await self.cache.put(self.keys.token(key.name, expires_in), payload)
                return token
        except CacheError as exc:
            raise TokenUnavailable(f"token refresh for {key.platform}:{key.app_id}: {exc}") from exc


class DbTokenStore:
    """Tokens in the ``platform_token`` table; a conditional update takes the refresh lease."""

    def __init__(self, wait: float = 15.0, poll: float = 0.05) -> None:
        self.wait = wait
        self.poll = poll

    async def read(self, key: TokenKey) -> Token | None:
        """The stored token."""
        row = await PlatformToken.get_or_none(name=key.name)
        return None if row is None else Token(row.token, row.expires_at)

    async def refresh(self, key: TokenKey, stale: str | None, fetch: Fetch, now: Now) -> Token:
        """Take the lease by a conditional update, or wait for whoever holds it."""
        await self._ensure_row(key)
        deadline = now() + self.wait
        while now() < deadline:
            row = await PlatformToken.get(name=key.name)
            current = Token(row.token, row.expires_at)
            if _usable(current, stale, now()):
                return current
            if await self._take_lease(row, now()):
                return await self._store(row, fetch, now)
            await asyncio.sleep(self.poll)
        raise TokenUnavailable(f"token refresh for {key.platform}:{key.app_id} timed out")

    async def _ensure_row(self, key: TokenKey) -> None:
        if await PlatformToken.exists(name=key.name):
            return
        with contextlib.suppress(IntegrityError):  # another process created it first
            await PlatformToken.create(name=key.name)

    async def _take_lease(self, row: PlatformToken, at: float) -> bool:
        claimed = await PlatformToken.filter(
            id=row.id, version=row.version, refresh_until__lt=at
        ).update(refresh_until=at + LEASE_SECONDS, version=row.version + 1)
        return claimed == 1

    async def _store(self, row: PlatformToken, fetch: Fetch, now: Now) -> Token:
        try:
            value, expires_in = await fetch()
        except BaseException:
            await PlatformToken.filter(id=row.id).update(refresh_until=0)
            raise
        token = Token(value, now() + expires_in)
        await PlatformToken.filter(id=row.id).update(
            token=value, expires_at=token.expires_at, refresh_until=0, version=row.version + 2
        )
        return token


def make_token_store(cache: Cache, keys: KeyBuilder) -> TokenStore:
    """Redis when the cache is shared across processes, else the database."""
    return RedisTokenStore(cache, keys) if cache.shared else DbTokenStore()
