"""Segments (分群): rules compiled to one SQL condition, previewed and explained.

``parse_rule`` validates the JSON/TOML form (``sop.segment_rules``); ``compile_segment``
turns a rule into ONE boolean condition over ``member`` that starts from the base of the
kind (``storage.audience``: opted-out members never for marketing; merged and erased
members never). ``preview`` counts, splits by channel (as the SOP preview does) and
samples in single queries; ``explain`` says which conditions one member meets. Nothing
is filtered in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from bot.config import Settings
from sop.audience_channels import CHANNELS, plan_for, split_sql
from sop.segment_rules import (
    Condition,
    Group,
    SegmentError,
    SegmentRule,
    dump_rule,
    parse_rule,
)
from sop.segment_sql import Scope, condition_sql
from sop.segment_text import describe
from sop.sql import Sql, join, rows, sql
from storage.audience import marketing_sql, service_sql
from storage.models import Member

__all__ = [
    "KINDS",
    "ConditionResult",
    "MemberNotFound",
    "SegmentError",
    "SegmentPreview",
    "SegmentRule",
    "compile_segment",
    "dump_rule",
    "explain",
    "leaves",
    "parse_rule",
    "preview",
]

Kind = Literal["marketing", "service"]
KINDS: tuple[Kind, ...] = ("marketing", "service")


class MemberNotFound(LookupError):
    """``explain`` was given a member code or id that does not exist."""


@dataclass(frozen=True, slots=True)
class SegmentPreview:
    """A rule's reach now: how many, by channel (oa_cs, oa_template, wecom, unreachable),
    and the codes of a few members (the lowest ids)."""

    count: int
    channels: dict[str, int]
    sample: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """One line of ``explain``: a path (``all[1].any[0]``, or ``base`` / ``rule``), what it
    asks for and whether the member meets it."""

    path: str
    description: str
    met: bool


def leaves(rule: SegmentRule, path: str = "") -> Iterator[tuple[str, Condition]]:
    """Every condition of the rule with its path, in order."""
    here = f"{path}.{rule.mode}" if path else rule.mode
    for i, item in enumerate(rule.items):
        if isinstance(item, Group):
            yield from leaves(item, f"{here}[{i}]")
        else:
            yield f"{here}[{i}]", item


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise SegmentError("kind", f"kind is marketing or service, not {kind!r}")


def _group_sql(group: Group, scope: Scope) -> Sql:
    here = f"{scope.path}.{group.mode}" if scope.path else group.mode
    if not group.items:
        return sql("1 = 1")
    parts: list[Sql] = []
    for i, item in enumerate(group.items):
        inner = Scope(scope.settings, scope.now, f"{here}[{i}]")
        piece = _group_sql(item, inner) if isinstance(item, Group) else condition_sql(item, inner)
        parts.append(sql("(") + piece + sql(")"))
    return join(parts, " AND " if group.mode == "all" else " OR ")


def _base(kind: str) -> Sql:
    _check_kind(kind)
    return sql(marketing_sql() if kind == "marketing" else service_sql())


def compile_segment(rule: SegmentRule, *, kind: str, settings: Settings, now: datetime) -> Sql:
    """The rule as one condition over ``member``, the kind's base included (``now`` aware)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    base = _base(kind)
    return sql("(") + base + sql(") AND (") + _group_sql(rule, Scope(settings, now)) + sql(")")


async def preview(
    rule: SegmentRule,
    *,
    kind: str,
    settings: Settings,
    now: datetime,
    sample: int = 5,
    account: str | None = None,
) -> SegmentPreview:
    """Count, channel split (``account`` default the first) and ``sample`` member codes."""
    where = sql(" FROM member WHERE ") + compile_segment(
        rule, kind=kind, settings=settings, now=now
    )
    plan = plan_for(account, kind, settings)
    channels = dict.fromkeys(CHANNELS, 0)
    for row in await rows(split_sql(plan, now) + where + sql(" GROUP BY 1")):
        channels[str(row["channel"])] = int(row["n"])
    codes: list[str] = []
    if sample > 0:
        page = (
            sql("SELECT member.code AS code") + where + sql(" ORDER BY member.id LIMIT {}", sample)
        )
        codes = [str(r["code"]) for r in await rows(page)]
    return SegmentPreview(sum(channels.values()), channels, codes)


async def _member_id(member: str | int) -> int:
    query = Member.filter(id=member) if isinstance(member, int) else Member.filter(code=member)
    found = await query.first()
    if found is None:
        raise MemberNotFound(f"member {member!r} not found")
    return int(found.id)


async def _holds(condition: Sql, member_id: int) -> bool:
    query = sql("SELECT member.id AS id FROM member WHERE member.id = {} AND (", member_id)
    return bool(await rows(query + condition + sql(")")))


async def explain(
    rule: SegmentRule,
    member_code_or_id: str | int,
    *,
    settings: Settings,
    now: datetime,
    kind: str = "marketing",
) -> list[ConditionResult]:
    """Each condition with its path, description and whether the member meets it, then
    ``base`` (may the member receive this kind at all) and ``rule`` (the whole rule)."""
    member_id = await _member_id(member_code_or_id)
    whole = compile_segment(rule, kind=kind, settings=settings, now=now)
    results: list[ConditionResult] = []
    for path, cond in leaves(rule):
        piece = condition_sql(cond, Scope(settings, now, path))
        results.append(ConditionResult(path, describe(cond), await _holds(piece, member_id)))
    base_text = (
        "may receive marketing: active, not erased, not opted out"
        if kind == "marketing"
        else "may receive service messages: active, not erased"
    )
    results.append(ConditionResult("base", base_text, await _holds(_base(kind), member_id)))
    results.append(ConditionResult("rule", "the whole rule", await _holds(whole, member_id)))
    return results
