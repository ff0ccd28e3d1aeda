"""Migrations: apply to an empty database, and agree with the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from tortoise import Tortoise, connections

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
