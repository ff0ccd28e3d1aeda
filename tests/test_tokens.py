"""Shared tokens: exactly one refresh, across coroutines, app instances and processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.clients.tokens import DbTokenStore, RedisTokenStore, TokenCache, TokenKey, TokenStore
from storage.cache import RedisCache
from storage.keys import KeyBuilder
from tests.conftest import NOW, TEST_REDIS

KEY = TokenKey("oa", "wxAPP", "s3cret")


class CountingFetch:
    """A token endpoint that counts calls and takes a little while."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> tuple[str, int]:
        self.calls += 1
        await asyncio.sleep(0.01)
        return f"token-{self.calls}", 7200


def _clock() -> float:
    return float(NOW)


async def _hammer(caches: list[TokenCache], fetch: CountingFetch, n: int = 20) -> set[str]:
    tokens = await asyncio.gather(*(caches[i % len(caches)].get(KEY, fetch) for i in range(n)))
    return set(tokens)


@pytest.mark.usefixtures("database")
async def test_db_store_fetches_once_for_many_callers_and_instances() -> None:
    fetch = CountingFetch()
    caches = [TokenCache(DbTokenStore(poll=0.005), _clock) for _ in range(3)]
    assert await _hammer(caches, fetch) == {"token-1"}
    assert fetch.calls == 1
    # later reads hit the stored token
    assert await caches[0].get(KEY, fetch) == "token-1"
    assert fetch.calls == 1


@pytest.mark.usefixtures("database")
async def test_rejected_token_is_replaced_once() -> None:
    fetch = CountingFetch()
    caches = [TokenCache(DbTokenStore(poll=0.005), _clock) for _ in range(3)]
    first = await caches[0].get(KEY, fetch)
    replaced = await asyncio.gather(*(c.invalidate(KEY, first, fetch) for c in caches * 3))
    assert set(replaced) == {"token-2"}
    assert fetch.calls == 2


@pytest.mark.usefixtures("database")
async def test_token_is_refreshed_before_it_expires() -> None:
    fetch = CountingFetch()
    now = [float(NOW)]
    cache = TokenCache(DbTokenStore(poll=0.005), lambda: now[0])
    assert await cache.get(KEY, fetch) == "token-1"
    now[0] += 7200 - 301
    assert await cache.get(KEY, fetch) == "token-1"
    now[0] += 2
    assert await cache.get(KEY, fetch) == "token-2"


@pytest.mark.usefixtures("database")
async def test_a_failed_fetch_releases_the_lease() -> None:
    calls = 0

    async def failing() -> tuple[str, int]:
        nonlocal calls
        calls += 1
        raise RuntimeError("platform down")

    cache = TokenCache(DbTokenStore(poll=0.005), _clock)
    with pytest.raises(RuntimeError):
        await cache.get(KEY, failing)
    fetch = CountingFetch()
    assert await cache.get(KEY, fetch) == "token-1"


def _redis_stores(n: int) -> list[TokenStore]:
    keys = KeyBuilder(prefix=f"ttok{id(object())}")
    return [RedisTokenStore(RedisCache(TEST_REDIS), keys) for _ in range(n)]


@pytest.mark.redis
async def test_redis_store_two_app_instances_fetch_once() -> None:
    fetch = CountingFetch()
    stores = _redis_stores(2)
    caches = [TokenCache(store, _clock) for store in stores]
    assert await _hammer(caches, fetch, 40) == {"token-1"}
    assert fetch.calls == 1
    replaced = await asyncio.gather(*(c.invalidate(KEY, "token-1", fetch) for c in caches * 5))
    assert set(replaced) == {"token-2"}
    assert fetch.calls == 2
    for store in stores:
        assert isinstance(store, RedisTokenStore)
        await store.cache.close()


_PROCESS = textwrap.dedent(
    """
    import asyncio, os, sys
    from storage import db
    from bot.clients.tokens import DbTokenStore, TokenCache, TokenKey

    url, log = sys.argv[1], sys.argv[2]

    async def fetch():
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        await asyncio.sleep(0.2)
        return f"token-from-{os.getpid()}", 7200

    async def main():
        await db.open_db(url)
        cache = TokenCache(DbTokenStore(poll=0.01))
        key = TokenKey("oa", "wxAPP", "s3cret")
        tokens = await asyncio.gather(*(cache.get(key, fetch) for _ in range(10)))
        print(sorted(set(tokens))[0])
        await db.close_db()

    asyncio.run(main())
    """
)


def test_two_processes_sharing_one_sqlite_file_fetch_once(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'shared.sqlite3'}"
    from storage import db

    asyncio.run(db.migrate(url))
    log = tmp_path / "fetches.log"
    root = Path(__file__).resolve().parent.parent
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, url, str(log)],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(log.read_text().splitlines()) == 1
    assert outputs[0] == outputs[1]


class NaiveStore:
    """Check-then-fetch without a lease: what the tests above must catch."""

    def __init__(self) -> None:
        self.token: tuple[str, float] | None = None

    async def read(self, key: TokenKey) -> None:
        return None

    async def refresh(self, key: TokenKey, stale: str | None, fetch: object, now: object) -> object:
        from bot.clients.tokens import Token

        value, expires_in = await fetch()  # type: ignore[operator]
        return Token(value, float(NOW) + expires_in)


async def test_the_exactly_once_check_catches_a_naive_store() -> None:
    fetch = CountingFetch()
    caches = [TokenCache(NaiveStore(), _clock) for _ in range(2)]  # type: ignore[arg-type]
    await _hammer(caches, fetch)
    assert fetch.calls > 1  # the assertion the real stores pass would fail here
