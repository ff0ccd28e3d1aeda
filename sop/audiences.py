"""Named SOP audiences compiled to SQL, paged by id, and the set-based touchpoint claim.

``compile_audience(rule, at, settings)`` turns a rule's ``audience`` (a name from
``AUDIENCES`` and its parameters) into an ``Audience``: one SQL condition over ``member``
that starts from the base condition of the rule's kind (``storage.audience``: merged and
erased members never, opted-out members never for marketing), adds the audience's own
condition, the common filters (``tiers``, ``tags_any``, ``tags_all``, ``tags_none``) and,
for a sliding ``N days`` window, ``NOT EXISTS`` on the SOP's recent touchpoints. Nothing is
filtered in Python: counting, paging, claiming and the channel split are single queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from bot.config import Settings
from bot.config_sop import SopRule
from sop import audience_sql as a
from sop import claims, member_sql
from sop.audience_channels import CHANNELS, ChannelPlan, channel_plan, split_sql
from sop.audience_params import (
    ActiveParams,
    CommonParams,
    ExpiringParams,
    InactiveParams,
    JoinedParams,
    TierWarningParams,
)
from sop.claims import ClaimSpec
from sop.sql import Sql, conn, day_start, dialect_of, join, rows, sql
from storage.audience import marketing_sql, service_sql

__all__ = ["AUDIENCES", "Audience", "AudienceError", "check_audience", "compile_audience"]


class AudienceError(ValueError):
    """An unknown audience name or bad parameters (the message names the problem)."""


@dataclass(frozen=True, slots=True)
class AudienceSpec:
    """A named selector: its parameter model and its SQL builder."""

    params: type[CommonParams]
    build: Callable[[a.Context, Any], a.Selection]


AUDIENCES: dict[str, AudienceSpec] = {
    "birthday_today": AudienceSpec(CommonParams, a.birthday_today),
    "birthday_month": AudienceSpec(CommonParams, a.birthday_month),
    "active": AudienceSpec(ActiveParams, a.active),
    "inactive": AudienceSpec(InactiveParams, a.inactive),
    "signed_in_yesterday_not_today": AudienceSpec(CommonParams, a.signed_in_yesterday_not_today),
    "joined_days_ago": AudienceSpec(JoinedParams, a.joined_days_ago),
    "member_day_active": AudienceSpec(ActiveParams, a.member_day_active),
    "points_expiring": AudienceSpec(ExpiringParams, a.points_expiring),
    "tier_warning": AudienceSpec(TierWarningParams, a.tier_warning),
    "all": AudienceSpec(CommonParams, a.everyone),
}


def _params(rule: SopRule) -> tuple[AudienceSpec, CommonParams]:
    name = rule.audience.name
    spec = AUDIENCES.get(name)
    if spec is None:
        known = ", ".join(sorted(AUDIENCES))
        raise AudienceError(f"unknown audience {name!r} (known: {known})")
    try:
        return spec, spec.params.model_validate(rule.audience.params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise AudienceError(f"audience {name!r}: {problems}") from None


def check_audience(rule: SopRule) -> None:
    """Raise AudienceError when the rule's audience is unknown or its params are bad."""
    _params(rule)


def compile_audience(rule: SopRule, at: datetime, settings: Settings) -> Audience:
    """The rule's audience at fire time ``at`` (aware; business dates from settings.tz)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the fire time must be timezone-aware")
    spec, params = _params(rule)
    unknown = sorted(set(params.tiers) - {t.code for t in settings.membership.tiers})
    if unknown:
        raise AudienceError(f"audience {rule.audience.name!r}: unknown tiers {unknown}")
    ctx = a.Context(rule, at, settings, dialect_of(conn()))
    selection = spec.build(ctx, params)
    base = marketing_sql() if rule.kind == "marketing" else service_sql()
    parts = [sql(base), selection.where, *_filters(params), *_window(rule, at, settings)]
    where = join([sql("(") + p + sql(")") for p in parts], " AND ")
    return Audience(rule, where, selection.occurrence, channel_plan(rule, settings))


def _filters(params: CommonParams) -> list[Sql]:
    """The common filters: tier in, tags any / all / none."""
    found: list[Sql] = []
    if params.tiers:
        found.append(member_sql.tier_in(params.tiers))
    if params.tags_any:
        found.append(member_sql.tags_any(params.tags_any))
    if params.tags_all:
        found.append(member_sql.tags_all(params.tags_all))
    if params.tags_none:
        found.append(member_sql.tags_none(params.tags_none))
    return found


def _window(rule: SopRule, at: datetime, settings: Settings) -> list[Sql]:
    """A sliding ``N days`` window: none of the SOP's touches created on the last N business
    days (the fire date included), so a daily fire re-touches a member on day N."""
    days = rule.sliding_days
    if days is None:
        return []
    since = day_start(at.astimezone(settings.tz).date() - timedelta(days=days - 1), settings.tz)
    return [
        sql(
            "NOT EXISTS (SELECT 1 FROM touchpoint tp WHERE tp.sop_id = {} "
            "AND tp.member_id = member.id AND tp.created_at >= {})",
            rule.id,
            since,
        )
    ]


class Audience:
    """One compiled audience: count, page, sample, claim and split it by channel."""

    def __init__(self, rule: SopRule, where: Sql, occurrence: Sql, plan: ChannelPlan) -> None:
        self.rule = rule
        self.where = where
        self.occurrence = occurrence
        self.plan = plan

    def _from(self) -> Sql:
        return sql(" FROM member WHERE ") + self.where

    async def count(self) -> int:
        """How many members the audience holds (one query)."""
        found = await rows(sql("SELECT COUNT(*) AS n") + self._from())
        return int(found[0]["n"])

    async def member_ids(self, after_id: int = 0, limit: int = 1000) -> list[int]:
        """The next ``limit`` member ids above ``after_id``, ascending (one query)."""
        page = sql("SELECT member.id AS id") + self._from()
        page += sql(" AND member.id > {} ORDER BY member.id LIMIT {}", after_id, limit)
        return [int(r["id"]) for r in await rows(page)]

    async def includes(self, member_id: int) -> bool:
        """Whether one member is in the audience (an event trigger's member)."""
        query = sql("SELECT member.id AS id") + self._from() + sql(" AND member.id = {}", member_id)
        return bool(await rows(query))

    async def sample(self, limit: int = 3) -> list[int]:
        """A few member ids of the audience (the lowest), for previews."""
        return await self.member_ids(0, limit)

    async def claim(
        self,
        *,
        run_id: int | None,
        due_at: datetime,
        now: datetime,
        batch: int = 5000,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Insert a pending Touchpoint per member, ``batch`` members per statement.

        ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (``sop.claims``): a member already
        touched for this occurrence is left alone, so a second claim inserts nothing.
        Returns rows inserted; ``progress`` gets the running total after each batch.
        """
        spec = ClaimSpec(self.rule.id, self.where, self.occurrence, run_id, due_at, now)
        return await claims.claim(spec, batch, progress)

    async def channel_split(self, now: datetime) -> dict[str, int]:
        """Members by the channel the outbound engine would pick at ``now`` (DESIGN §5):
        ``oa_cs``, ``oa_template`` (service rules only), ``wecom``, ``unreachable``, each
        present (0 when none)."""
        query = split_sql(self.plan, now) + self._from() + sql(" GROUP BY 1")
        counts = dict.fromkeys(CHANNELS, 0)
        for row in await rows(query):
            counts[str(row["channel"])] = int(row["n"])
        return counts
