"""``python -m bot makemigrations``: write a migration for model changes (developers).

Wraps tortoise's own autodetector so developers need no separate tortoise config.
"""

from __future__ import annotations

from tortoise import Tortoise
from tortoise.migrations.autodetector import MigrationAutodetector

from storage.db import tortoise_config


async def pending_changes() -> list[str]:
    """Describe model changes that no migration covers yet (empty when in sync)."""
    config = tortoise_config("sqlite://:memory:")
    await Tortoise.init(config=config)
    try:
        assert Tortoise.apps is not None
        writers = await MigrationAutodetector(Tortoise.apps, config["apps"]).changes()
        return [f"{w.app_label}.{w.name}: {len(w.operations)} operation(s)" for w in writers]
    finally:
        await Tortoise.close_connections()


async def make_migrations() -> int:
    """Write migration files for pending model changes."""
    config = tortoise_config("sqlite://:memory:")
    await Tortoise.init(config=config)
    try:
        assert Tortoise.apps is not None
        paths = await MigrationAutodetector(Tortoise.apps, config["apps"]).write()
    finally:
        await Tortoise.close_connections()
    for path in paths:
        print(f"created {path}")
    if not paths:
        print("no changes detected")
    return 0
