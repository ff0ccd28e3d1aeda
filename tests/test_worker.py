"""One sender per SQLite database; the worker command refuses a second one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from bot.outbox.lock import SenderLock


def test_sender_lock_is_exclusive_per_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'a.sqlite3'}"
    first, second = SenderLock(url), SenderLock(url)
    assert first.acquire()
    assert not second.acquire()
    other = SenderLock(f"sqlite://{tmp_path / 'b.sqlite3'}")
    assert other.acquire()
    first.release()
    assert second.acquire()
    second.release()
    other.release()


def test_postgres_needs_no_lock() -> None:
    url = "postgres://postgres@127.0.0.1:5432/test"
    assert SenderLock(url).acquire()
    assert SenderLock(url).acquire()


def test_worker_refuses_while_a_server_sends_on_the_same_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_file = tmp_path / "serve.sqlite3"
    config = tmp_path / "c.toml"
    config.write_text(f"[database]\nurl = 'sqlite://{db_file}'\n", encoding="utf-8")
    held = SenderLock(f"sqlite://{db_file}")
    assert held.acquire()  # what `serve` with an embedded sender holds
    try:
        assert main(["--config", str(config), "worker"]) == 2
    finally:
        held.release()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "embedded sender already uses this SQLite database" in err
