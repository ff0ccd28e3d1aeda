"""Database lifecycle: tortoise configuration, migrations and shutdown."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api.migrate import migrate as tortoise_migrate

APP = "models"
MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"

# SQLite is the embedded default: WAL so readers never block the writer, a busy timeout
# so a CLI process and the server wait for each other instead of failing.
_SQLITE_PRAGMAS = {"journal_mode": "WAL", "busy_timeout": 5000, "synchronous": "NORMAL"}


async def keep_session(connection: Any) -> None:
    """asyncpg pool release without its reset query (a round trip after every query).

    Before calling this asyncpg has already rolled back a transaction left open and
    dropped listeners. The reset query (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL``) would undo session state, and this server keeps none: no session
    advisory locks, no LISTEN, no ``SET`` outside a transaction, no cursors left open.
    Anything that starts keeping such state must reset it itself.
    """


def tortoise_config(url: str) -> dict[str, Any]:
    """The tortoise config dict for a database URL (sqlite:// or postgres://)."""
    connection = expand_db_url(url)
    if connection["engine"].endswith("sqlite"):
        path = connection["credentials"]["file_path"]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection["credentials"].update(_SQLITE_PRAGMAS)
    elif connection["engine"].endswith("asyncpg"):
        connection["credentials"].setdefault("reset", keep_session)  # asyncpg.create_pool
    return {
        "connections": {"default": connection},
        "apps": {
            APP: {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# The group commits' pool (PostgreSQL): a few connections whose prepared statements always
# use their cached generic plan. PostgreSQL re-plans a prepared statement for every call
# while its custom plans look cheaper than the generic one, which the batch sign-in's
# array parameters make it believe; planning that statement cost as much as running it
# (backend CPU per sign-in halved with the generic plan for batches of a few). Not one of
# tortoise's named connections: with two, every ``in_transaction()`` would have to name
# one.
_BATCH_POOL = {"minsize": 1, "maxsize": 2}
_GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}
_batch: BaseDBAsyncClient | None = None


def batch_credentials(url: str) -> dict[str, Any] | None:
    """The batch pool's credentials for a PostgreSQL URL (None for SQLite)."""
    return _batch_of(tortoise_config(url)["connections"]["default"])


def _batch_of(connection: dict[str, Any]) -> dict[str, Any] | None:
    if not connection["engine"].endswith("asyncpg"):
        return None
    credentials: dict[str, Any] = copy.deepcopy(connection["credentials"])
    credentials.update(_BATCH_POOL)
    credentials["server_settings"] = {**credentials.get("server_settings", {}), **_GENERIC_PLANS}
    return credentials


def batch_client() -> BaseDBAsyncClient:
    """The connection group commits write on: the batch pool on PostgreSQL (see
    :func:`batch_credentials`), else the ORM's ``default``."""
    if _batch is not None:
        return _batch
    client: BaseDBAsyncClient = connections.get("default")
    return client


def is_sqlite(url: str) -> bool:
    """True for the embedded SQLite default."""
    return url.startswith("sqlite://")


async def migrate(url: str) -> None:
    """Apply every pending migration (tortoise's built-in migration executor).

    The connections are closed whether it worked or not (an open SQLite connection's
    thread would keep the process alive after the error).
    """
    try:
        await tortoise_migrate(config=tortoise_config(url))
    finally:
        await Tortoise.close_connections()


async def open_db(url: str) -> None:
    """Connect the ORM (migrations must already be applied).

    Tortoise 1.x keeps its state in a contextvar; aiohttp serves requests in tasks that do
    not inherit the start-up context, so the connection is also the process-wide fallback.
    """
    global _batch
    config = tortoise_config(url)
    credentials = _batch_of(config["connections"]["default"])
    await Tortoise.init(config=config, _enable_global_fallback=True)
    if credentials is not None:  # its pool opens on first use
        from tortoise.backends.asyncpg.client import AsyncpgDBClient

        _batch = AsyncpgDBClient(connection_name="batch", **credentials)


async def close_db() -> None:
    """Close every connection."""
    global _batch
    batch, _batch = _batch, None
    try:
        if batch is not None:
            await batch.close()
    finally:
        await Tortoise.close_connections()
