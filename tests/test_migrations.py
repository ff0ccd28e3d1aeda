"""Migrations: apply to an empty database, and agree with the models."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from tortoise import Tortoise, connections
from tortoise.migrations.api.migrate import migrate as tortoise_migrate

from bot.cli import main
from bot.devtools.migrations import pending_changes
from storage import db
from tests.conftest import TEST_DB


async def test_models_and_migrations_agree() -> None:
    assert await pending_changes() == []


async def test_all_migrations_apply_to_an_empty_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'fresh.sqlite3'}"
    await db.migrate(url)
    await db.migrate(url)  # idempotent
    await Tortoise.init(config=db.tortoise_config(url))
    try:
        _, rows = await connections.get("default").execute_query(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
        tables = {row["name"] for row in rows}
        assert {"inbound_event", "tortoise_migrations"} <= tables
        _, mode = await connections.get("default").execute_query("PRAGMA journal_mode")
        assert mode[0]["journal_mode"] == "wal"
    finally:
        await Tortoise.close_connections()


@pytest.mark.postgres
async def test_all_migrations_apply_to_postgres(database: str) -> None:
    assert TEST_DB
    _, rows = await connections.get("default").execute_query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
    )
    assert "inbound_event" in {row["table_name"] for row in rows}


def test_cli_migrate_on_a_fresh_clone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    dbfile = tmp_path / "sub" / "dir" / "x.sqlite3"
    config.write_text(f"[database]\nurl = 'sqlite://{dbfile}'\n", encoding="utf-8")
    assert main(["--config", str(config), "migrate"]) == 0
    assert dbfile.exists()
    assert "migrations applied" in capsys.readouterr().out


@pytest.mark.postgres
async def test_member_and_identity_rows_have_room_for_in_place_updates(database: str) -> None:
    # 0011: fillfactor 85 on the two tables every callback updates, and no index on
    # member.last_active_at (an indexed column changed makes every update write each index)
    conn = connections.get("default")
    _, rows = await conn.execute_query(
        "SELECT relname, reloptions FROM pg_class WHERE relname IN ('member', 'identity')"
    )
    assert {row["relname"]: row["reloptions"] for row in rows} == {
        "member": ["fillfactor=85"],
        "identity": ["fillfactor=85"],
    }
    _, rows = await conn.execute_query("SELECT indexdef FROM pg_indexes WHERE tablename = 'member'")
    assert rows
    assert not [row for row in rows if "last_active_at" in row["indexdef"]]


_MEMBER_ROW = (
    "INSERT INTO member (code, status, tier, growth, points_balance, points_debt, channel, "
    "created_at, marketing_opt_out, name) VALUES ('M1', 'active', 'basic', 0, 0, 0, 'oa', "
    "'2026-01-01 00:00:00+00', FALSE, '')"
)
_IDENTITY_ROW = (
    "INSERT INTO identity (kind, app, value, followed, cs_sent_since_message, "
    "cs_sent_since_event, created_at, member_id) VALUES ('oa_openid', 'wx1', 'o1', TRUE, 0, 0, "
    "'2026-01-01 00:00:00+00', (SELECT id FROM member WHERE code = 'M1'))"
)


async def _member_indexes(url: str) -> set[str]:
    await Tortoise.init(config=db.tortoise_config(url))
    try:
        conn = connections.get("default")
        if url.startswith("sqlite"):
            sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'member'"
        else:
            sql = "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'member'"
        _, rows = await conn.execute_query(sql)
        return {row["name"] for row in rows}
    finally:
        await Tortoise.close_connections()


async def _upgrade_a_populated_database_through_0011(url: str) -> None:
    # 0011 on a database with members referenced by other rows: only the index goes (a
    # table rebuild would fail on the references and lose the other indexes)
    await tortoise_migrate(
        config=db.tortoise_config(url), target="models.0010_broadcast_confirmations"
    )
    await Tortoise.close_connections()
    await Tortoise.init(config=db.tortoise_config(url))
    try:
        await connections.get("default").execute_script(f"{_MEMBER_ROW}; {_IDENTITY_ROW};")
    finally:
        await Tortoise.close_connections()
    before = await _member_indexes(url)
    assert "idx_member_last_ac_af6901" in before
    await db.migrate(url)
    after = await _member_indexes(url)
    assert after == before - {"idx_member_last_ac_af6901"}
    await tortoise_migrate(
        config=db.tortoise_config(url), target="models.0010_broadcast_confirmations"
    )
    await Tortoise.close_connections()
    assert await _member_indexes(url) == before  # and back
    await db.migrate(url)
    await Tortoise.init(config=db.tortoise_config(url))
    try:
        _, rows = await connections.get("default").execute_query(
            "SELECT count(*) AS n FROM identity JOIN member ON member.id = identity.member_id"
        )
        assert rows[0]["n"] == 1
    finally:
        await Tortoise.close_connections()


async def test_0011_upgrades_a_populated_sqlite_database(tmp_path: Path) -> None:
    await _upgrade_a_populated_database_through_0011(f"sqlite://{tmp_path / 'old.sqlite3'}")


@pytest.mark.postgres
async def test_0011_upgrades_a_populated_postgres_database() -> None:
    url = await _fresh_postgres("test_migrate_0011")
    try:
        await _upgrade_a_populated_database_through_0011(url)
    finally:
        await _drop_postgres(url)


async def _fresh_postgres(name: str) -> str:
    import asyncpg

    parts = urlsplit(TEST_DB)
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _drop_postgres(url: str) -> None:
    import asyncpg

    parts = urlsplit(url)
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{parts.path[1:]}" WITH (FORCE)')
    finally:
        await admin.close()
