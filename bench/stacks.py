"""The full server's storage for one bench round: config, a fresh database, migrations.

Two stacks:

- **embedded** (``make run``'s configuration): a new SQLite file in the round's temporary
  directory and the in-process cache.
- **postgres** (``--db postgres://… [--redis redis://…]``): the database named in the URL
  is dropped and created again for every round (so its name must contain ``bench``:
  nobody points this at a database they care about by accident), and the Redis database
  is emptied with FLUSHDB (so it must name a database other than 0, e.g. ``/5``).

Either way ``python -m bot migrate --config …`` applies the migrations before the server
starts. After the round, :func:`count_rows` reads what the server wrote (members,
sign-ins, points entries, recorded callbacks), which says what the measured path did.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
COUNTED = ("member", "sign_in", "points_entry", "inbound_event")


class StackError(RuntimeError):
    """A database or Redis URL the bench refuses, or one it cannot prepare."""


@dataclass(frozen=True)
class Stack:
    """Where the full server keeps its state."""

    db: str = ""  # "": a new SQLite file per round
    redis: str = ""  # "": the in-process cache

    @property
    def name(self) -> str:
        """A label for the report."""
        db = "PostgreSQL" if self.db else "SQLite"
        return f"{db} + {'Redis' if self.redis else 'in-process cache'}"

    def check(self) -> None:
        """Refuse URLs the bench must not wipe."""
        if self.db:
            parts = urlsplit(self.db)
            if parts.scheme not in ("postgres", "postgresql"):
                raise StackError(f"--db must be a postgres:// URL, not {parts.scheme}://")
            if "bench" not in parts.path.lstrip("/"):
                raise StackError(
                    "--db: the database is dropped and re-created every round, so its name "
                    f"must contain 'bench' (got {parts.path.lstrip('/')!r})"
                )
        if self.redis:
            db = urlsplit(self.redis).path.lstrip("/") or "0"
            if not db.isdigit() or db == "0":
                raise StackError(
                    "--redis: the database is emptied (FLUSHDB) every round; name one other "
                    "than 0, e.g. redis://127.0.0.1:6379/5"
                )

    def database_url(self, data_dir: Path) -> str:
        """The URL the server gets for this round."""
        return self.db or f"sqlite://{data_dir / 'bench.sqlite3'}"

    def reset(self) -> None:
        """A fresh, empty database (and Redis database) for the next round."""
        if self.db:
            asyncio.run(_recreate_postgres(self.db))
        if self.redis:
            import redis

            client = redis.Redis.from_url(self.redis)
            try:
                client.flushdb()
            finally:
                client.close()

    def count_rows(self, data_dir: Path) -> dict[str, int]:
        """Rows in the tables that say what the measured path did."""
        if self.db:
            return asyncio.run(_count_postgres(self.db))
        with sqlite3.connect(data_dir / "bench.sqlite3") as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}


async def _recreate_postgres(url: str) -> None:
    import asyncpg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        conn = await asyncpg.connect(admin)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StackError(f"cannot connect to PostgreSQL at {parts.hostname}: {exc}") from None
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _count_postgres(url: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in COUNTED}
    finally:
        await conn.close()


def migrate(config: Path, env: dict[str, str]) -> None:
    """``python -m bot migrate --config …``; fail with its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "migrate", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"migrate failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


# --- configuration --------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_settings(
    example: Path, port: int, data_dir: Path, stack: Stack | None = None
) -> dict[str, Any]:
    """The example config on ``stack``, with quiet logs and no dev slowdowns."""
    stack = stack or Stack()
    with example.open("rb") as fh:
        raw: dict[str, Any] = tomllib.load(fh)
    raw.setdefault("server", {}).update(host="127.0.0.1", port=port)
    raw.setdefault("database", {})["url"] = stack.database_url(data_dir)
    raw.setdefault("redis", {})["url"] = stack.redis
    raw.setdefault("log", {})["level"] = "WARNING"
    raw.setdefault("dev", {}).update(time_travel=False, slow_keyword="")
    if raw["dev"].get("fake_platform"):
        base = f"http://127.0.0.1:{port}/_fake"
        raw.setdefault("api", {}).update(
            oa_base_url=f"{base}/oa", wecom_base_url=f"{base}/wecom", mp_base_url=f"{base}/mp"
        )
    return raw


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Serialise the settings (tables, scalars, arrays of tables inline) as TOML."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and scalars else []
    lines += [f"{json.dumps(key)} = {_toml_value(value)}" for key, value in scalars.items()]
    text = "\n".join(lines) + ("\n\n" if lines else "")
    for key, table in tables.items():
        name = json.dumps(key)
        text += to_toml(table, f"{prefix}.{name}" if prefix else name)
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # inside an array: [[membership.tiers]], [[oa.menu]]
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
