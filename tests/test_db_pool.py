"""PostgreSQL pool: connections go back without asyncpg's reset query, still clean."""

from __future__ import annotations

import pytest
from tortoise import connections

from storage import db


@pytest.mark.postgres
async def test_pool_releases_without_the_reset_query_and_rolls_back_open_work(
    database: str,
) -> None:
    client = connections.get("default")
    await client.execute_query("SELECT 1")  # the pool exists
    pool = client._pool  # type: ignore[attr-defined]
    assert pool._reset is db.keep_session
    async with pool.acquire() as raw:
        await raw.execute("CREATE TABLE IF NOT EXISTS pool_probe (x int)")
    async with pool.acquire() as raw:
        await raw.execute("BEGIN")
        await raw.execute("INSERT INTO pool_probe VALUES (1)")  # released uncommitted
    async with pool.acquire() as raw:
        assert await raw.fetchval("SELECT count(*) FROM pool_probe") == 0
        await raw.execute("DROP TABLE pool_probe")
