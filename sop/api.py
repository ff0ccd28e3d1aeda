"""What the scheduler needs from the engine (``sop.engine.SopEngine`` provides it)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from bot.config_sop import SopRule
from storage.models import SopRun


class SopFirer(Protocol):
    """Fires SOPs at their fire times and sends touches that fell due."""

    @property
    def cron_rules(self) -> Mapping[str, SopRule]:
        """Enabled SOPs with a cron trigger, by id."""

    async def fire(self, sop_id: str, fire_time: datetime, *, runner: str) -> SopRun | None:
        """Run one fire time once: records the SopRun (None if it was recorded before),
        claims the audience's touchpoints and dispatches those due now."""

    async def resume(self, run: SopRun, *, runner: str) -> SopRun:
        """Finish a run a dead runner left ``running`` (claims are idempotent)."""

    async def dispatch_due(self, now: datetime) -> int:
        """Send the touches whose ``due_at`` passed (delays, quiet-hour deferrals)."""
