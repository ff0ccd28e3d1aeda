"""Helpers for tests that run ``bot.cli.main`` (its own event loop) against a test database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from tortoise import Tortoise, connections

from storage import db
from tests.conftest import TEST_DB

T = TypeVar("T")

MOBILE_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
HMAC_KEY = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
KEYS = f"[security]\nmobile_key = '{MOBILE_KEY}'\nmobile_hmac_key = '{HMAC_KEY}'\n"


def write_config(tmp_path: Path, db_url: str, extra: str = "") -> str:
    """A settings file on the test's database (plus extra TOML); its path."""
    path = tmp_path / "cli.toml"
    path.write_text(
        f"[database]\nurl = '{db_url}'\n"
        "[accounts.brand]\nappid = 'wx2c2769f8efd9abc2'\nsecret = 'brand-secret'\n"
        "token = 'spamtest'\nmode = 'plaintext'\n" + extra,
        encoding="utf-8",
    )
    return str(path)


def with_db(db_url: str, work: Callable[[], Awaitable[T]], *, fresh: bool = False) -> T:
    """Run ``work`` on its own loop with the ORM open (``fresh``: empty PostgreSQL first)."""

    async def run() -> T:
        await db.open_db(db_url)
        try:
            if fresh and TEST_DB:
                await _truncate()
            return await work()
        finally:
            await db.close_db()

    return asyncio.run(run())


async def _truncate() -> None:
    assert Tortoise.apps is not None
    tables = [m._meta.db_table for m in Tortoise.apps.get_models_iterable()]
    await connections.get("default").execute_script(
        f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE;"
    )
