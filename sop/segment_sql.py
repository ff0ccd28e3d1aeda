"""Each segment condition as one SQL condition over ``member``, and its description.

Business days come from ``settings.tz``: "inactive 30 days" means no activity on the last
30 business days (today included), as in the SOP ``inactive`` audience. A purchase is an
order not fully refunded; spend is paid minus refunded. RFM quintiles (NTILE(5), 5 =
best) rank the active members with purchases by their latest purchase, their number of
purchases and their spend (ties broken by member id), in one uncorrelated subquery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import singledispatch

from bot.config import Settings
from sop import member_sql
from sop.segment_rules import (
    BirthdayMonth,
    Channel,
    Condition,
    Followed,
    Growth,
    InactiveDays,
    Joined,
    LastPurchase,
    Points,
    Rfm,
    SegmentError,
    Tags,
    Tier,
    TotalSpend,
    WecomCustomer,
)
from sop.sql import Sql, day_start, in_list, join, sql

__all__ = ["Scope", "condition_sql"]

_LAST = "COALESCE(member.last_active_at, member.created_at)"
_PURCHASES = (
    "SELECT 1 FROM orders o WHERE o.member_id = member.id AND o.amount_fen > o.refunded_fen"
)
_SPEND = (
    "COALESCE((SELECT SUM(o.amount_fen - o.refunded_fen) FROM orders o "
    "WHERE o.member_id = member.id), 0)"
)
_RFM = (
    "member.id IN (SELECT q.member_id FROM (SELECT o.member_id AS member_id, "
    "NTILE(5) OVER (ORDER BY MAX(o.paid_at), o.member_id) AS r, "
    "NTILE(5) OVER (ORDER BY COUNT(*), o.member_id) AS f, "
    "NTILE(5) OVER (ORDER BY SUM(o.amount_fen - o.refunded_fen), o.member_id) AS m "
    "FROM orders o JOIN member rm ON rm.id = o.member_id "
    "WHERE o.amount_fen > o.refunded_fen AND rm.status = 'active' AND rm.deleted_at IS NULL "
    "GROUP BY o.member_id) q WHERE "
)


@dataclass(frozen=True, slots=True)
class Scope:
    """What a compile knows: the settings, the time, the condition's path (for errors)."""

    settings: Settings
    now: datetime
    path: str = ""

    @property
    def today(self) -> date:
        """The business date of ``now``."""
        return self.now.astimezone(self.settings.tz).date()

    def days_back(self, days: int) -> datetime:
        """Midnight (UTC) of the business day ``days - 1`` before today: the start of the
        last ``days`` business days, today included."""
        return day_start(self.today - timedelta(days=days - 1), self.settings.tz)


def _range(column: str, low: int | None, high: int | None) -> Sql:
    parts: list[Sql] = []
    if low is not None:
        parts.append(sql(f"{column} >= {{}}", low))
    if high is not None:
        parts.append(sql(f"{column} <= {{}}", high))
    return join(parts, " AND ")


def _negate(condition: Sql, holds: bool) -> Sql:
    return condition if holds else sql("NOT ") + condition


@singledispatch
def condition_sql(cond: Condition, scope: Scope) -> Sql:
    """The condition as SQL over ``member`` (no base condition)."""
    raise TypeError(f"no SQL for {type(cond).__name__}")


@condition_sql.register
def _tier(cond: Tier, scope: Scope) -> Sql:
    known = {t.code for t in scope.settings.membership.tiers}
    unknown = sorted(set(cond.in_) - known)
    if unknown:
        raise SegmentError(f"{scope.path}.in", f"unknown tiers {unknown} (known: {sorted(known)})")
    return member_sql.tier_in(cond.in_)


@condition_sql.register
def _tags(cond: Tags, scope: Scope) -> Sql:
    parts: list[Sql] = []
    if cond.any:
        parts.append(member_sql.tags_any(cond.any))
    if cond.all:
        parts.append(member_sql.tags_all(cond.all))
    if cond.none:
        parts.append(member_sql.tags_none(cond.none))
    return join(parts, " AND ")


@condition_sql.register
def _points(cond: Points, scope: Scope) -> Sql:
    return _range("member.points_balance", cond.min, cond.max)


@condition_sql.register
def _growth(cond: Growth, scope: Scope) -> Sql:
    return _range("member.growth", cond.min, cond.max)


@condition_sql.register
def _inactive(cond: InactiveDays, scope: Scope) -> Sql:
    parts: list[Sql] = []
    if cond.min:  # inactive ≥ N: nothing on the last N business days
        parts.append(sql(f"{_LAST} < {{}}", scope.days_back(cond.min)))
    if cond.max is not None:  # inactive ≤ M: something since the day M days ago
        parts.append(sql(f"{_LAST} >= {{}}", scope.days_back(cond.max + 1)))
    return join(parts, " AND ") if parts else sql("1 = 1")


@condition_sql.register
def _last_purchase(cond: LastPurchase, scope: Scope) -> Sql:
    parts: list[Sql] = []
    if cond.within_days is not None:
        since = scope.days_back(cond.within_days)
        parts.append(sql(f"EXISTS ({_PURCHASES} AND o.paid_at >= {{}})", since))
    if cond.before_days is not None:
        since = scope.days_back(cond.before_days)
        parts.append(
            sql(f"EXISTS ({_PURCHASES}) AND NOT EXISTS ({_PURCHASES} AND o.paid_at >= {{}})", since)
        )
    return join(parts, " AND ")


@condition_sql.register
def _spend(cond: TotalSpend, scope: Scope) -> Sql:
    return _range(_SPEND, cond.min_fen, cond.max_fen)


@condition_sql.register
def _birthday(cond: BirthdayMonth, scope: Scope) -> Sql:
    return member_sql.birthday_months(sorted(set(cond.in_)))


@condition_sql.register
def _channel(cond: Channel, scope: Scope) -> Sql:
    return sql("member.channel IN ") + in_list(sorted(set(cond.in_)))


@condition_sql.register
def _joined(cond: Joined, scope: Scope) -> Sql:
    tz = scope.settings.tz
    parts: list[Sql] = []
    if cond.from_ is not None:
        parts.append(sql("member.created_at >= {}", day_start(cond.from_, tz)))
    if cond.to is not None:
        parts.append(sql("member.created_at < {}", day_start(cond.to + timedelta(days=1), tz)))
    return join(parts, " AND ")


@condition_sql.register
def _followed(cond: Followed, scope: Scope) -> Sql:
    appid = ""
    if cond.account:
        account = scope.settings.accounts.get(cond.account)
        if account is None:
            known = ", ".join(scope.settings.accounts) or "none"
            raise SegmentError(f"{scope.path}.account", f"no account {cond.account!r} ({known})")
        appid = account.appid
    return _negate(member_sql.followed(appid), cond.is_)


@condition_sql.register
def _wecom(cond: WecomCustomer, scope: Scope) -> Sql:
    return _negate(sql(member_sql.WECOM_CUSTOMER), cond.is_)


@condition_sql.register
def _rfm(cond: Rfm, scope: Scope) -> Sql:
    parts: list[Sql] = []
    for column, scores in (("r", cond.recency), ("f", cond.frequency), ("m", cond.monetary)):
        if scores:
            parts.append(sql(f"q.{column} IN ") + in_list(sorted(set(scores))))
    return sql(_RFM) + join(parts, " AND ") + sql(")")
