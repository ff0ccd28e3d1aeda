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


@pytest.mark.postgres
async def test_group_commits_write_on_their_own_pool_with_generic_plans(database: str) -> None:
    batch = db.batch_client()
    assert batch is not connections.get("default")
    _, rows = await batch.execute_query("SHOW plan_cache_mode")
    assert rows[0]["plan_cache_mode"] == "force_generic_plan"
    _, rows = await connections.get("default").execute_query("SHOW plan_cache_mode")
    assert rows[0]["plan_cache_mode"] == "auto"  # every other query plans as usual
    pool = batch._pool  # type: ignore[attr-defined]
    assert pool._reset is db.keep_session
    assert pool._maxsize == 2


def test_the_batch_pool_is_postgres_only_and_keeps_the_urls_settings() -> None:
    url = "postgres://u:p@db.example:5432/scrm?minsize=3&application_name=scrm"
    default = db.tortoise_config(url)["connections"]["default"]["credentials"]
    batch = db.batch_credentials(url)
    assert batch is not None
    assert default["minsize"] == "3"  # the URL's own pool setting, untouched
    assert "server_settings" not in default
    assert batch["server_settings"]["plan_cache_mode"] == "force_generic_plan"
    assert (batch["maxsize"], batch["host"], batch["database"]) == (2, "db.example", "scrm")
    assert batch["application_name"] == "scrm"
    assert batch["reset"] is db.keep_session
    assert db.batch_credentials("sqlite://:memory:") is None
