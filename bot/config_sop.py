"""``[sop]``: the SOP engine's settings and the SOP rules themselves (SOPs are data).

The structure of every rule is checked here (ids, kinds, cron expressions, delays, once-per
windows); what needs the rest of the program (the audience and template exist, marketing
is never routed to a template message) is checked at start-up by ``sop.validate``. Both
stop start-up with an error naming the SOP id.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DURATION = re.compile(r"^(\d+)\s*([dhm])$")
_WINDOW = re.compile(r"^(\d+)\s+days?$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
EVENTS = ("first_subscribe", "tier_change")
CALENDAR_WINDOWS = ("day", "week", "month", "year", "ever")
# The daily jobs the scheduling leader runs (sop.jobs), by name: a five-field cron in
# business time, "" to disable; ``auto`` (tiers only) means 00:20 on [membership]
# evaluation_day.
DEFAULT_JOBS = {
    "points_expire": "5 0 * * *",
    "coupons_expire": "10 0 * * *",
    "tiers_evaluate": "auto",
    "points_reconcile": "30 3 * * *",
    "wecom_sync": "0 2 * * *",  # only when [wecom] is configured
    "wecom_tasks": "*/15 * * * *",  # group-message send results; only with [wecom]
}
AUTO_CRON_JOBS = ("tiers_evaluate",)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(text: str) -> timedelta:
    """``3d``, ``12h`` or ``30m`` as a timedelta (ValueError otherwise)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 3d, 12h or 30m")
    amount, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=amount), "h": timedelta(hours=amount)}.get(
        unit, timedelta(minutes=amount)
    )


def parse_clock(text: str) -> time:
    """``HH:MM`` as a time (ValueError otherwise)."""
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time of day such as 22:00")
    return time(int(match.group(1)), int(match.group(2)))


class SopTrigger(_Section):
    """Either ``cron`` (five fields, business time) or ``event`` with ``delays``."""

    cron: str = ""
    event: Literal["", "first_subscribe", "tier_change"] = ""
    delays: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> SopTrigger:
        if bool(self.cron) == bool(self.event):
            raise ValueError("give either cron or event")
        if self.cron:
            try:
                CronTrigger.from_crontab(self.cron)
            except ValueError as exc:
                raise ValueError(f"bad cron {self.cron!r}: {exc}") from None
            if self.delays:
                raise ValueError("delays belong to event triggers")
        for delay in self.delays:
            parse_duration(delay)
        return self

    @property
    def delay_steps(self) -> tuple[timedelta, ...]:
        """The event trigger's delays (none: at once)."""
        return tuple(parse_duration(d) for d in self.delays) or (timedelta(0),)


class SopAudience(_Section):
    """A named selector (``sop.audiences``) and its parameters."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    params: dict[str, Any] = Field(default_factory=dict)


class SopAction(_Section):
    """What a touch does: a message (template), and optionally points, a coupon, a tag."""

    template: str = Field(default="", pattern=r"^([a-z0-9_]+)?$")
    points: int = Field(default=0, ge=0, le=1_000_000)
    coupon: str = ""  # a [[rewards]] code: the coupon it issues, without spending points
    tag: str = ""  # a local tag name set on the member

    @model_validator(mode="after")
    def _does_something(self) -> SopAction:
        if not (self.template or self.points or self.coupon or self.tag):
            raise ValueError("an action needs a template, points, a coupon or a tag")
        return self


class SopRule(_Section):
    """One SOP (see docs/sop.md)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    kind: Literal["service", "marketing"]
    priority: int = Field(default=100, ge=0, le=10_000)
    account: str = ""  # an [accounts] name; default: the first account
    enabled: bool = True
    trigger: SopTrigger
    audience: SopAudience
    action: SopAction
    once_per: str = "ever"  # day | week | month | year | ever | "N days"

    @field_validator("once_per")
    @classmethod
    def _window(cls, value: str) -> str:
        if value in CALENDAR_WINDOWS or _WINDOW.match(value):
            return value
        raise ValueError("once_per must be day, week, month, year, ever or 'N days'")

    @property
    def sliding_days(self) -> int | None:
        """N for a sliding ``N days`` window, None for calendar buckets."""
        match = _WINDOW.match(self.once_per)
        return int(match.group(1)) if match else None


class SopSettings(_Section):
    """The engine's settings and its rules (``rules``, plus those in ``rules_file``)."""

    scheduler: bool = True  # run the scheduler in serve (only the leader fires)
    catch_up_grace_hours: float = Field(default=6.0, ge=0, le=24 * 7)
    lease_seconds: int = Field(default=30, ge=5, le=600)
    quiet_hours: str = "22:00-08:00"  # marketing waits until the end ("" = none)
    marketing_cap: int = Field(default=2, ge=0)  # marketing messages per member ...
    marketing_cap_days: int = Field(default=7, ge=1)  # ... per this many days
    batch: int = Field(default=5000, ge=100, le=100_000)  # members per audience page
    rules_file: str = ""  # a TOML file of [[rules]] tables, relative to the settings file
    rules: tuple[SopRule, ...] = ()
    jobs: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_JOBS))

    @field_validator("jobs")
    @classmethod
    def _jobs(cls, value: dict[str, str]) -> dict[str, str]:
        for job, cron in value.items():
            if job not in DEFAULT_JOBS:
                raise ValueError(f"unknown job {job!r} (known: {', '.join(DEFAULT_JOBS)})")
            if not cron or (cron == "auto" and job in AUTO_CRON_JOBS):
                continue
            try:
                CronTrigger.from_crontab(cron)
            except ValueError as exc:
                raise ValueError(f"job {job}: bad cron {cron!r}: {exc}") from None
        return {**DEFAULT_JOBS, **value}

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        if value:
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError("quiet_hours must be HH:MM-HH:MM or empty")
            parse_clock(start)
            parse_clock(end)
        return value

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: tuple[SopRule, ...]) -> tuple[SopRule, ...]:
        seen: set[str] = set()
        for rule in value:
            if rule.id in seen:
                raise ValueError(f"SOP {rule.id}: duplicate id")
            seen.add(rule.id)
        return value

    @property
    def quiet(self) -> tuple[time, time] | None:
        """The quiet hours (start, end), None when there are none."""
        if not self.quiet_hours:
            return None
        start, _, end = self.quiet_hours.partition("-")
        return parse_clock(start), parse_clock(end)

    @property
    def catch_up_grace(self) -> timedelta:
        """How old a missed fire time may be and still run."""
        return timedelta(hours=self.catch_up_grace_hours)
