"""The named audiences as SQL over ``member``: a WHERE condition and an occurrence key.

Each builder gets the fire context (the rule, the fire time, business date and zone) and
its validated parameters, and returns a ``Selection``: the condition (without the base
condition and common filters, which ``sop.audiences`` adds) and the SQL expression of the
occurrence key (a bound constant for most, per member for ``inactive``). Business days
become UTC bounds here, so a server clock in UTC selects by the business calendar.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from bot.config import Settings
from bot.config_sop import SopRule
from bot.services.calendar import is_member_day, next_evaluation
from sop.audience_params import (
    ActiveParams,
    CommonParams,
    ExpiringParams,
    InactiveParams,
    JoinedParams,
    TierWarningParams,
)
from sop.occurrence import bucket
from sop.sql import Sql, day_bounds, day_start, in_list, join, sql
from storage.repos.tiers import DropStep

NOTHING = sql("1 = 0")
EVERYONE = sql("1 = 1")
REACTIVATION = "reactivation"


@dataclass(frozen=True, slots=True)
class Context:
    """What a fire knows: the rule, the fire time, the settings, the SQL dialect."""

    rule: SopRule
    at: datetime
    settings: Settings
    dialect: str

    @property
    def tz(self) -> ZoneInfo:
        """The business time zone."""
        return self.settings.tz

    @property
    def today(self) -> date:
        """The fire time's business date."""
        return self.at.astimezone(self.tz).date()


@dataclass(frozen=True, slots=True)
class Selection:
    """An audience's own condition and its occurrence-key expression."""

    where: Sql
    occurrence: Sql


def _bucketed(ctx: Context, where: Sql) -> Selection:
    return Selection(where, sql("{text}", bucket(ctx.rule, ctx.today)))


def birthday_today(ctx: Context, params: CommonParams) -> Selection:
    """Birthday on the fire date (29 February on 28 February in other years)."""
    today = ctx.today
    days = [today.month * 100 + today.day]
    if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
        days.append(229)
    return _bucketed(ctx, sql("member.birth_md IN ") + in_list(days))


def birthday_month(ctx: Context, params: CommonParams) -> Selection:
    """Birthday in the fire date's month."""
    month = ctx.today.month
    where = sql("member.birth_md BETWEEN {} AND {}", month * 100 + 1, month * 100 + 31)
    return _bucketed(ctx, where)


def _active_since(ctx: Context, days: int) -> Sql:
    since = day_start(ctx.today - timedelta(days=days - 1), ctx.tz)
    return sql("member.last_active_at >= {}", since)


def active(ctx: Context, params: ActiveParams) -> Selection:
    """Some activity on one of the last ``days`` business days (the fire date included)."""
    return _bucketed(ctx, _active_since(ctx, params.days))


def member_day_active(ctx: Context, params: ActiveParams) -> Selection:
    """Active members, and nobody unless the fire date is this month's member day."""
    if not is_member_day(ctx.settings.member_day, ctx.today):
        return _bucketed(ctx, NOTHING)
    return _bucketed(ctx, _active_since(ctx, params.days))


_LAST = "COALESCE(member.last_active_at, member.created_at)"


def inactive(ctx: Context, params: InactiveParams) -> Selection:
    """No activity for N days: the N touch while inactive ≥ N and < the next step.

    The key is ``reactivation:{last active business date}:{N}``, so a member who comes back
    and lapses again is touched again, and each step once per lapse.
    """
    bounds = [day_start(ctx.today - timedelta(days=n - 1), ctx.tz) for n in params.days]
    where = sql(f"{_LAST} < {{}}", bounds[0])
    last_day = _business_date(ctx, _LAST)
    cases: list[Sql] = []
    for i, n in enumerate(params.days[:-1]):
        cases.append(sql(f"WHEN {_LAST} >= {{}} THEN {{text}}", bounds[i + 1], f":{n}"))
    tail = sql("{text}", f":{params.days[-1]}")
    step = join([sql("CASE "), *cases, sql(" ELSE "), tail, sql(" END")], "") if cases else tail
    key = sql("{text} || ", f"{REACTIVATION}:") + last_day + sql(" || ") + step
    return Selection(where, key)


def _business_date(ctx: Context, column: str) -> Sql:
    """``YYYY-MM-DD`` of a timestamp column in the business zone, as SQL text."""
    if ctx.dialect == "postgres":
        return sql(f"to_char(({column}) AT TIME ZONE {{text}}, 'YYYY-MM-DD')", ctx.settings.tz.key)
    # SQLite has no zone database: the zone's offset at the fire time (exact for zones
    # without daylight saving, such as the default Asia/Shanghai)
    offset = ctx.at.astimezone(ctx.tz).utcoffset() or timedelta(0)
    return sql(f"date({column}, {{}})", f"{int(offset.total_seconds() // 60):+d} minutes")


def signed_in_yesterday_not_today(ctx: Context, params: CommonParams) -> Selection:
    """Signed in on the business day before the fire date, not (yet) on the fire date."""
    signed = "EXISTS (SELECT 1 FROM sign_in s WHERE s.member_id = member.id AND s.day = {})"
    where = sql(f"{signed} AND NOT {signed}", ctx.today - timedelta(days=1), ctx.today)
    return _bucketed(ctx, where)


def joined_days_ago(ctx: Context, params: JoinedParams) -> Selection:
    """Joined on the business date ``days`` before the fire date."""
    start, end = day_bounds(ctx.today - timedelta(days=params.days), ctx.tz)
    return _bucketed(ctx, sql("member.created_at >= {} AND member.created_at < {}", start, end))


def points_expiring(ctx: Context, params: ExpiringParams) -> Selection:
    """An open lot whose last business day is ``days`` after the fire date; key = that day.

    A lot expiring at midnight is spent on the day before (the default lots expire at
    1 January 00:00, so their last day is 31 December).
    """
    last_day = ctx.today + timedelta(days=params.days)
    after, until = day_bounds(last_day, ctx.tz)
    where = sql(
        "EXISTS (SELECT 1 FROM points_lot l WHERE l.member_id = member.id "
        "AND l.closed_at IS NULL AND l.remaining > 0 AND l.expires_at > {} "
        "AND l.expires_at <= {})",
        after,
        until,
    )
    return Selection(where, sql("{text}", last_day.isoformat()))


def drop_steps(settings: Settings) -> list[DropStep]:
    """The yearly evaluation's steps: each tier above the lowest drops to the one below."""
    tiers = settings.membership.tiers
    return [
        DropStep(tiers[i].code, tiers[i - 1].code, tiers[i].retention) for i in range(1, len(tiers))
    ]


def tier_warning(ctx: Context, params: TierWarningParams) -> Selection:
    """Members who would drop at the next evaluation, on the day ``days`` before it.

    The rule of ``storage.repos.tiers.run_evaluation``: growth earned in the 12 months
    before the evaluation day below the tier's retention threshold.
    """
    evaluation = next_evaluation(ctx.settings.membership, ctx.today)
    steps = drop_steps(ctx.settings)
    if evaluation - timedelta(days=params.days) != ctx.today or not steps:
        return _bucketed(ctx, NOTHING)
    start = day_start(evaluation.replace(year=evaluation.year - 1), ctx.tz)
    end = day_start(evaluation, ctx.tz)
    earned = (
        "COALESCE((SELECT SUM(g.amount) FROM growth_entry g WHERE g.member_id = member.id "
        "AND g.created_at >= {} AND g.created_at < {}), 0)"
    )
    parts = [
        sql(f"(member.tier = {{}} AND {earned} < {{}})", s.tier, start, end, s.retention)
        for s in steps
    ]
    return _bucketed(ctx, sql("(") + join(parts, " OR ") + sql(")"))


def everyone(ctx: Context, params: CommonParams) -> Selection:
    """Every member the base condition allows."""
    return _bucketed(ctx, EVERYONE)


Builder = Callable[[Context, BaseModel], Selection]
