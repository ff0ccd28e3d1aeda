"""A small real-database SOP firer for the scheduler tests (the engine is tested elsewhere).

It records every SopRun through ``sop.runs`` and "claims" one Touchpoint per fire time
(the real unique key), so a duplicate fire or a duplicate claim shows in the database.
``hold`` makes a fire stop after its claim until released (a leader killed mid-run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError

from bot.clock import BusinessClock
from bot.config_sop import SopRule
from sop import runs
from storage.models import SopRun, Touchpoint
from storage.timeutil import utc


def cron_rule(sop_id: str, cron: str) -> SopRule:
    """A cron SOP (its audience and action are not used by this firer)."""
    return SopRule.model_validate(
        {
            "id": sop_id,
            "kind": "service",
            "trigger": {"cron": cron},
            "audience": {"name": "all_members"},
            "action": {"tag": "probe"},
        }
    )


class RecordingFirer:
    """Fires through ``sop.runs`` and records what it did."""

    def __init__(self, clock: BusinessClock, *rules: SopRule) -> None:
        self.clock = clock
        self.rules = {rule.id: rule for rule in rules}
        self.fired: list[tuple[str, datetime, str]] = []
        self.resumed: list[tuple[int, str]] = []
        self.claims = 0  # Touchpoint rows this firer created
        self.dispatched: list[datetime] = []
        self.hold: asyncio.Event | None = None  # set: a fire waits here after its claim
        self.claimed = asyncio.Event()

    @property
    def cron_rules(self) -> Mapping[str, SopRule]:
        """The rules given."""
        return self.rules

    async def fire(self, sop_id: str, fire_time: datetime, *, runner: str) -> SopRun | None:
        """begin → claim → (hold) → finish."""
        run = await runs.begin(sop_id, fire_time, runner, self.clock.now())
        if run is None:
            return None
        self.fired.append((sop_id, fire_time, runner))
        await self._claim(run)
        if self.hold is not None:
            await self.hold.wait()
        await runs.finish(run.id, runs.DONE, {"claimed": 1}, self.clock.now())
        return await SopRun.get(id=run.id)

    async def resume(self, run: SopRun, *, runner: str) -> SopRun:
        """Claim again (idempotent) and finish."""
        self.resumed.append((run.id, runner))
        await self._claim(run)
        await runs.finish(run.id, runs.DONE, {"claimed": 1, "resumed": 1}, self.clock.now())
        return await SopRun.get(id=run.id)

    async def dispatch_due(self, now: datetime) -> int:
        """Record the call."""
        self.dispatched.append(now)
        return 0

    async def _claim(self, run: SopRun) -> None:
        now = utc(self.clock.now())
        values: dict[str, Any] = {"due_at": now, "created_at": now, "run_id": run.id}
        try:
            await Touchpoint.create(
                sop_id=run.sop_id, member_id=1, occurrence=run.fire_time.isoformat(), **values
            )
        except IntegrityError:
            return
        self.claims += 1
        self.claimed.set()
