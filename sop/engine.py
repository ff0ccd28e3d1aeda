"""Fire a SOP at a fire time: one SopRun, a set-based claim, the touches dispatched.

A fire time runs once (the SopRun key); the claim inserts one Touchpoint per selected
member and occurrence (its key), so a resumed or repeated run claims nobody twice; the
dispatcher grants and messages each touch once (the touch's own key). A run that dies
half-way is left ``running`` and finished by whoever adopts it (``resume``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config_sop import SopRule
from bot.context import Services
from sop import runs
from sop.audiences import compile_audience
from sop.dispatch import TouchDispatcher
from sop.grants import Granted
from sop.occurrence import bucket
from sop.variables import TouchContext, variables
from storage.models import Member, SopRun, Touchpoint

log = logging.getLogger("bot.sop")
Progress = Callable[[str, int], None]


class UnknownSop(LookupError):
    """No SOP with that id in the settings."""


@dataclass(frozen=True, slots=True)
class Preview:
    """What a fire time would do, computed without claiming or sending anything."""

    rule: SopRule
    fire_time: datetime
    selected: int
    channels: dict[str, int]
    sample_member_ids: list[int]
    already_run: bool


class SopEngine:
    """The SopFirer of the scheduler and the ``sop`` CLI."""

    def __init__(self, services: Services, dispatcher: TouchDispatcher | None = None) -> None:
        self.services = services
        self.rules: dict[str, SopRule] = {r.id: r for r in services.settings.sop.rules}
        self.dispatcher = dispatcher or TouchDispatcher(services, self.rules)

    @property
    def cron_rules(self) -> Mapping[str, SopRule]:
        """Enabled SOPs with a cron trigger, by id."""
        return {i: r for i, r in self.rules.items() if r.enabled and r.trigger.cron}

    def rule(self, sop_id: str) -> SopRule:
        """The SOP of an id (UnknownSop when there is none)."""
        try:
            return self.rules[sop_id]
        except KeyError:
            known = ", ".join(sorted(self.rules)) or "none configured"
            raise UnknownSop(f"no SOP {sop_id!r} (known: {known})") from None

    async def fire(
        self,
        sop_id: str,
        fire_time: datetime,
        *,
        runner: str,
        progress: Progress | None = None,
        trigger: str = runs.CRON,
    ) -> SopRun | None:
        """Run one fire time once; None when it was recorded before (ran or missed)."""
        rule = self.rule(sop_id)
        run = await runs.begin(sop_id, fire_time, runner, self.services.clock.now(), trigger)
        if run is None:
            return None
        return await self._execute(rule, run, fire_time, progress)

    async def resume(self, run: SopRun, *, runner: str, progress: Progress | None = None) -> SopRun:
        """Finish a run a dead runner left ``running`` (its claims are idempotent)."""
        if not await runs.adopt(run, runner):
            return await SopRun.get(id=run.id)
        fire_time = run.fire_time.astimezone(self.services.settings.tz)
        return await self._execute(self.rule(run.sop_id), run, fire_time, progress)

    async def dispatch_due(self, now: datetime) -> int:
        """Send the touches whose ``due_at`` passed (delays, quiet-hour deferrals)."""
        tallies = await self.dispatcher.dispatch_due(now)
        return sum(tallies.values())

    async def preview(self, sop_id: str, fire_time: datetime, samples: int = 3) -> Preview:
        """Audience size, channel split and sample members of a fire time (no writes)."""
        rule = self.rule(sop_id)
        audience = compile_audience(rule, fire_time, self.services.settings)
        now = self.services.clock.now()
        return Preview(
            rule=rule,
            fire_time=fire_time,
            selected=await audience.count(),
            channels=await audience.channel_split(now),
            sample_member_ids=await audience.sample(samples),
            already_run=await runs.get(sop_id, fire_time) is not None,
        )

    async def sample_text(self, rule: SopRule, fire_time: datetime) -> str:
        """The message the first selected member would get (nothing is written)."""
        if not rule.action.template:
            return ""
        audience = compile_audience(rule, fire_time, self.services.settings)
        found = await audience.sample(1)
        member = await Member.get_or_none(id=found[0]) if found else None
        if member is None:
            return ""
        member.points_balance += rule.action.points  # as the member will read it (unsaved)
        day = fire_time.astimezone(self.services.settings.tz).date()
        touch = Touchpoint(
            sop_id=rule.id, member_id=member.id, occurrence=bucket(rule, day), due_at=fire_time
        )
        context = TouchContext(self.services.settings, rule, touch, member, fire_time)
        granted = Granted(points=rule.action.points)
        values = await variables(context, granted)
        return self.services.renderer.render(rule.action.template, **values)

    async def _execute(
        self, rule: SopRule, run: SopRun, fire_time: datetime, progress: Progress | None
    ) -> SopRun:
        clock = self.services.clock
        counts: dict[str, Any] = {"attempts": int((run.counts or {}).get("attempts", 0)) + 1}
        try:
            audience = compile_audience(rule, fire_time, self.services.settings)
            counts["selected"] = await audience.count()
            now = clock.now()
            counts["claimed"] = await audience.claim(
                run_id=int(run.id),
                # a fire time asked for ahead of the clock (sop run --at) is due now
                due_at=min(fire_time, now),
                now=now,
                batch=self.services.settings.sop.batch,
                progress=_stage(progress, "claimed"),
            )
            sent = _stage(progress, "sent")
            tallies: Counter[str] = await self.dispatcher.dispatch_due(
                clock.now(),
                sop_id=rule.id,
                run_id=int(run.id),
                progress=None if sent is None else lambda tally: sent(sum(tally.values())),
            )
            counts.update(tallies)
        except Exception as exc:
            log.exception("SOP run failed", extra={"sop": rule.id, "run": run.id})
            await runs.finish(int(run.id), runs.FAILED, counts, clock.now(), f"{exc}")
            raise
        await runs.finish(int(run.id), runs.DONE, counts, clock.now())
        log.info("SOP run done", extra={"sop": rule.id, "run": run.id, "counts": counts})
        return await SopRun.get(id=run.id)


def _stage(progress: Progress | None, stage: str) -> Callable[[int], None] | None:
    if progress is None:
        return None

    def report(done: int) -> None:
        progress(stage, done)

    return report
