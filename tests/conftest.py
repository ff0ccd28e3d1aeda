"""Shared fixtures: settings on the official vectors, a migrated database per test, fakes.

The suite runs on the embedded default (SQLite file per test, in-process cache) and, when
``SCRM_TEST_DB``/``SCRM_TEST_REDIS`` are set, on PostgreSQL and Redis. Tests marked
``postgres`` are deselected on the embedded pass.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tortoise import Tortoise, connections

from bot.app import Overrides, build_services, create_app
from bot.clock import BusinessClock
from bot.config import Settings, settings_from_dict
from bot.config_commerce import ROLES
from bot.context import Services
from bot.devtools.fake import FakePlatform, create_fake_app
from storage import db
from storage.cache import Cache, MemoryCache, RedisCache
from storage.keys import KeyBuilder
from tests.fakes import FakeWall, ManualBudget, RecordingLateHook

PAYLOADS = Path(__file__).parent / "payloads"
TEST_DB = os.environ.get("SCRM_TEST_DB", "")
TEST_REDIS = os.environ.get("SCRM_TEST_REDIS", "")

# Official WXBizMsgCrypt vectors (tests/payloads/README.md).
OA_TOKEN = "spamtest"
OA_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OA_APPID = "wx2c2769f8efd9abc2"
WECOM_TOKEN = "QDG6eK"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_CORP_ID = "wx5823bf96d3bd56c7"
NOW = 1_700_000_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect PostgreSQL/Redis tests on the embedded pass (they are not skipped)."""
    keep, drop = [], []
    for item in items:
        needs_pg = item.get_closest_marker("postgres") is not None and not TEST_DB
        needs_redis = item.get_closest_marker("redis") is not None and not TEST_REDIS
        (drop if needs_pg or needs_redis else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def read_payload(name: str) -> str:
    """A fixture file's text from tests/payloads/."""
    return (PAYLOADS / name).read_text(encoding="utf-8")


API_TOKENS = {role: f"test-{role}-token-0123456789abcdef" for role in ROLES}


def base_config(db_url: str = "sqlite://:memory:", redis_url: str = "") -> dict[str, Any]:
    """Raw settings: three OA accounts (safe, compatible, plaintext) and the WeCom corp."""
    oa = {
        "appid": OA_APPID,
        "secret": "brand-secret",
        "token": OA_TOKEN,
        "encoding_aes_key": OA_AES_KEY,
    }
    return {
        "accounts": {
            "brand": {**oa, "mode": "safe", "type": "service", "verified": True},
            "compat": {**oa, "appid": "wxcompat00000001", "mode": "compatible"},
            "plain": {"appid": "wxplain000000001", "token": OA_TOKEN, "mode": "plaintext"},
        },
        "wecom": {
            "name": "corp",
            "corp_id": WECOM_CORP_ID,
            "agent_id": 218,
            "agent_secret": "agent-secret",
            "contact_secret": "contact-secret",
            "token": WECOM_TOKEN,
            "encoding_aes_key": WECOM_AES_KEY,
        },
        "database": {"url": db_url},
        "redis": {"url": redis_url},
        # No test reaches the real platform: without the fake, API calls are refused at once.
        "api": {
            "oa_base_url": "http://127.0.0.1:9/oa",
            "wecom_base_url": "http://127.0.0.1:9/wecom",
            "mp_base_url": "http://127.0.0.1:9/mp",
        },
        "log": {"level": "DEBUG"},
        # One token per role; tests send them with ``api_headers(role)``.
        "admin": {
            "tokens": [
                {"name": f"test-{role}", "role": role, "token": API_TOKENS[role]} for role in ROLES
            ]
        },
    }


def api_headers(role: str) -> dict[str, str]:
    """The Authorization header of the test token for a role."""
    return {"Authorization": f"Bearer {API_TOKENS[role]}"}


def make_settings(raw: dict[str, Any] | None = None, **sections: dict[str, Any]) -> Settings:
    """Validated settings from ``base_config`` with sections replaced or merged."""
    data = raw or base_config()
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return settings_from_dict(data, {}, "test-config.toml")


# --- database --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    asyncio.run(db.migrate(f"sqlite://{path}"))
    return path


@pytest.fixture(scope="session")
def _postgres_ready() -> str:
    if not TEST_DB:
        return ""

    async def reset() -> None:
        await Tortoise.init(config=db.tortoise_config(TEST_DB))
        conn = connections.get("default")
        await conn.execute_script("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        await Tortoise.close_connections()
        await db.migrate(TEST_DB)

    asyncio.run(reset())
    return TEST_DB


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database for this test."""
    if TEST_DB:
        return str(request.getfixturevalue("_postgres_ready"))
    template: Path = request.getfixturevalue("_sqlite_template")
    path = tmp_path / "test.sqlite3"
    shutil.copy(template, path)
    return f"sqlite://{path}"


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[str]:
    """The ORM connected to this test's database (emptied first on PostgreSQL)."""
    await db.open_db(db_url)
    if TEST_DB:
        await _truncate_all()
    yield db_url
    await db.close_db()


async def _truncate_all() -> None:
    assert Tortoise.apps is not None
    tables = [m._meta.db_table for m in Tortoise.apps.get_models_iterable()]
    if tables:
        conn = connections.get("default")
        await conn.execute_script(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE;")


# --- fakes and the app -----------------------------------------------------------------


@pytest.fixture
def wall() -> FakeWall:
    """The wall clock, pinned."""
    return FakeWall(NOW)


@pytest.fixture
def budget() -> ManualBudget:
    """A reply budget fired by hand."""
    return ManualBudget()


@pytest.fixture
def late_hook() -> RecordingLateHook:
    """Records late replies."""
    return RecordingLateHook()


@pytest.fixture
async def cache() -> AsyncIterator[Cache]:
    """Redis on the Redis pass, else in-process."""
    made: Cache = RedisCache(TEST_REDIS) if TEST_REDIS else MemoryCache()
    yield made
    await made.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def any_cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    """Each cache implementation in turn (Redis only on the Redis pass)."""
    made: Cache = RedisCache(TEST_REDIS) if request.param == "redis" else MemoryCache()
    yield made
    await made.close()


@pytest.fixture
def keys() -> KeyBuilder:
    """A key prefix unique to this test, so tests never share Redis keys."""
    return KeyBuilder(prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def settings(database: str) -> Settings:
    """The standard test settings on this test's database."""
    return make_settings(base_config(database))


async def _no_sleep(seconds: float) -> None:
    """API back-off without waiting (tests never sleep on wall time)."""


AppMaker = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_client(
    database: str,
    aiohttp_client: Any,
    wall: FakeWall,
    budget: ManualBudget,
    late_hook: RecordingLateHook,
    cache: Cache,
    keys: KeyBuilder,
) -> AppMaker:
    """Build a test client around ``create_app`` with the test fakes injected."""

    async def make(settings: Settings | None = None, **overrides: Any) -> TestClient[Any, Any]:
        settings = settings or make_settings(base_config(database))
        values: dict[str, Any] = {
            "wall": wall,
            "clock": BusinessClock(settings.tz, allow_offset=True, source=wall.time),
            "budget": budget,
            "late_hook": late_hook,
            "cache": cache,
            "keys": keys,
            "manage_db": False,
            "run_sender": False,
            "run_scheduler": False,
            "api_sleep": _no_sleep,
        }
        values.update(overrides)
        app = create_app(settings, Overrides(**values))
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
async def client(make_client: AppMaker) -> TestClient[Any, Any]:
    """A client for the standard test app."""
    return await make_client()


# --- the fake platform and API clients --------------------------------------------------


@pytest.fixture
async def fake(aiohttp_server: Any, wall: FakeWall, database: str) -> FakeServer:
    """The fake WeChat platform on its own test server, on the pinned wall clock."""
    platform = FakePlatform.from_settings(make_settings(base_config(database)), clock=wall.time)
    server = await aiohttp_server(create_fake_app(platform))
    return FakeServer(platform, str(server.make_url("")).rstrip("/"))


@dataclass
class FakeServer:
    """The fake platform and its base URL."""

    platform: FakePlatform
    url: str

    def api(self) -> dict[str, str]:
        """An [api] settings section pointing at this fake."""
        return {
            "oa_base_url": f"{self.url}/oa",
            "wecom_base_url": f"{self.url}/wecom",
            "mp_base_url": f"{self.url}/mp",
        }


@pytest.fixture
def fake_settings(database: str, fake: FakeServer) -> Settings:
    """Test settings whose API base URLs point at the fake platform."""
    return make_settings(base_config(database), api=fake.api())


@pytest.fixture
async def services(
    fake_settings: Settings, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> AsyncIterator[Services]:
    """Services with started API clients against the fake platform."""
    async with started_services(fake_settings, wall, cache, keys) as made:
        yield made


@asynccontextmanager
async def started_services(
    settings: Settings, wall: FakeWall, cache: Cache, keys: KeyBuilder
) -> AsyncIterator[Services]:
    """Services on these settings with the test fakes, API clients started and closed."""
    made = build_services(
        settings,
        Overrides(
            wall=wall,
            clock=BusinessClock(settings.tz, allow_offset=True, source=wall.time),
            cache=cache,
            keys=keys,
            api_sleep=_no_sleep,
        ),
    )
    await made.clients.start()
    try:
        yield made
    finally:
        await made.clients.close()
