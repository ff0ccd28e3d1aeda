"""Event-triggered SOPs: one pending Touchpoint per delay step, inserted once.

``first_subscribe`` steps are keyed ``first_subscribe:d3`` (a series never restarts on
a re-subscribe); ``tier_change`` is keyed by the new tier and the business date.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.config_sop import SopRule
from bot.services.events import TIER_CHANGE
from sop.variables import step_label
from storage.models import Member
from storage.repos import touchpoints as repo


def occurrences(rule: SopRule, event: str, at: datetime, tier: str, tz: ZoneInfo) -> list[str]:
    """The occurrence key of each delay step of ``rule`` for an event at ``at``."""
    labels = [step_label(d) for d in rule.trigger.delays] or ["now"]
    if event == TIER_CHANGE:
        base = f"{event}:{tier}:{at.astimezone(tz).date().isoformat()}"
        return [base] if len(labels) == 1 else [f"{base}:{label}" for label in labels]
    return [f"{event}:{label}" for label in labels]


async def insert_touches(
    rules: Iterable[SopRule], event: str, member_id: int, at: datetime, tz: ZoneInfo
) -> int:
    """Insert the pending rows of every enabled rule triggered by ``event``; rows created."""
    matching = [r for r in rules if r.enabled and r.trigger.event == event]
    if not matching:
        return 0
    member = await Member.get_or_none(id=member_id)
    if member is None:
        return 0
    created = 0
    for rule in matching:
        keys = occurrences(rule, event, at, member.tier, tz)
        for key, delay in zip(keys, rule.trigger.delay_steps, strict=True):
            if await repo.insert_once(rule.id, member_id, key, at + delay, at):
                created += 1
    return created
