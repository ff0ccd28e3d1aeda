"""The segment rule format (分群): all/any groups of conditions, validated with paths.

A rule is ``{"all": [...]}`` or ``{"any": [...]}``; each item is a condition
``{"field": ..., ...}`` (the keys each field takes are in ``FIELDS``) or a nested group.
Every model forbids extra keys; ``parse_rule`` walks the data itself so an error names
the path of the bad condition (``all[2].in: ...``). docs/segments.md has the format.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["FIELDS", "Condition", "Group", "SegmentError", "SegmentRule", "dump_rule", "parse_rule"]

MAX_DEPTH, MAX_ITEMS = 6, 200
Names = Annotated[tuple[str, ...], Field(max_length=500)]  # bound values stay few


class SegmentError(ValueError):
    """A bad rule; the message starts with the path of the bad part (``all[2].in``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class _Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Range(_Condition):
    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _bounds(self) -> _Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class Tier(_Condition):
    """``{"field": "tier", "in": ["gold"]}``: the tier is one of these codes."""

    field: Literal["tier"]
    in_: Names = Field(alias="in", min_length=1)


class Tags(_Condition):
    """``{"field": "tags", "any"|"all"|"none": [...]}`` (one or more of the three)."""

    field: Literal["tags"]
    any: Names = ()
    all: Names = ()
    none: Names = ()

    @model_validator(mode="after")
    def _some(self) -> Tags:
        if not (self.any or self.all or self.none):
            raise ValueError("give any, all or none (tag names)")
        for names in (self.any, self.all, self.none):
            if any(not n.strip() for n in names):
                raise ValueError("tag names must not be empty")
        return self


class Points(_Range):
    """``{"field": "points", "min": 100, "max": 500}``: the points balance, inclusive."""

    field: Literal["points"]


class Growth(_Range):
    """``{"field": "growth", "min": ..., "max": ...}``: the growth value, inclusive."""

    field: Literal["growth"]


class InactiveDays(_Range):
    """``{"field": "inactive_days", "min": 30}``: business days since the last activity."""

    field: Literal["inactive_days"]
    min: int | None = Field(default=None, ge=0, le=36500)
    max: int | None = Field(default=None, ge=0, le=36500)


class LastPurchase(_Condition):
    """``within_days`` (a purchase on one of the last N days) and/or ``before_days``
    (purchases, but none on the last N days)."""

    field: Literal["last_purchase"]
    within_days: int | None = Field(default=None, ge=1, le=36500)
    before_days: int | None = Field(default=None, ge=1, le=36500)

    @model_validator(mode="after")
    def _some(self) -> LastPurchase:
        if self.within_days is None and self.before_days is None:
            raise ValueError("give within_days or before_days")
        return self


class TotalSpend(_Condition):
    """``{"field": "total_spend", "min_fen": 10000}``: paid minus refunded, in fen."""

    field: Literal["total_spend"]
    min_fen: int | None = Field(default=None, ge=0)
    max_fen: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> TotalSpend:
        if self.min_fen is None and self.max_fen is None:
            raise ValueError("give min_fen, max_fen or both")
        if self.min_fen is not None and self.max_fen is not None and self.min_fen > self.max_fen:
            raise ValueError("min_fen is above max_fen")
        return self


class BirthdayMonth(_Condition):
    """``{"field": "birthday_month", "in": [5]}``: a birthday in one of these months."""

    field: Literal["birthday_month"]
    in_: Annotated[tuple[int, ...], Field(max_length=12)] = Field(alias="in", min_length=1)

    @model_validator(mode="after")
    def _months(self) -> BirthdayMonth:
        if any(not 1 <= m <= 12 for m in self.in_):
            raise ValueError("months are 1 to 12")
        return self


class Channel(_Condition):
    """``{"field": "channel", "in": ["store_01"]}``: where the member joined (source)."""

    field: Literal["channel"]
    in_: Names = Field(alias="in", min_length=1)


class Joined(_Condition):
    """``{"field": "joined", "from": "2026-01-01", "to": "2026-03-31"}``: business dates,
    both inclusive (either may be left out)."""

    field: Literal["joined"]
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Joined:
        if self.from_ is None and self.to is None:
            raise ValueError("give from, to or both (dates)")
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise ValueError("from is after to")
        return self


class Followed(_Condition):
    """``{"field": "followed", "is": true}``: follows the Official Account (``account``:
    an [accounts] name; default any account)."""

    field: Literal["followed"]
    is_: bool = Field(alias="is")
    account: str = ""


class WecomCustomer(_Condition):
    """``{"field": "wecom_customer", "is": true}``: an active relation with a staff member."""

    field: Literal["wecom_customer"]
    is_: bool = Field(alias="is")


Quintiles = Annotated[tuple[int, ...], Field(max_length=5)]


class Rfm(_Condition):
    """``{"field": "rfm", "recency": [4, 5], "frequency": [..], "monetary": [..]}``:
    quintiles 1-5 (5 = best) among members with purchases; omitted scores are free."""

    field: Literal["rfm"]
    recency: Quintiles = ()
    frequency: Quintiles = ()
    monetary: Quintiles = ()

    @model_validator(mode="after")
    def _scores(self) -> Rfm:
        scores = (self.recency, self.frequency, self.monetary)
        if not any(scores):
            raise ValueError("give recency, frequency or monetary (quintiles 1-5)")
        if any(not 1 <= q <= 5 for s in scores for q in s):
            raise ValueError("quintiles are 1 to 5")
        return self


Condition = (
    Tier
    | Tags
    | Points
    | Growth
    | InactiveDays
    | LastPurchase
    | TotalSpend
    | BirthdayMonth
    | Channel
    | Joined
    | Followed
    | WecomCustomer
    | Rfm
)

FIELDS: dict[str, type[_Condition]] = {
    "tier": Tier,
    "tags": Tags,
    "points": Points,
    "growth": Growth,
    "inactive_days": InactiveDays,
    "last_purchase": LastPurchase,
    "total_spend": TotalSpend,
    "birthday_month": BirthdayMonth,
    "channel": Channel,
    "joined": Joined,
    "followed": Followed,
    "wecom_customer": WecomCustomer,
    "rfm": Rfm,
}


class Group(BaseModel):
    """``all`` (every item holds) or ``any`` (at least one does) of conditions and groups."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["all", "any"]
    items: tuple[Condition | Group, ...]


SegmentRule = Group


def parse_rule(data: Mapping[str, Any]) -> SegmentRule:
    """The validated rule; SegmentError naming the path of the first problem."""
    counter = [0]
    return _group(data, "", 1, counter)


def _group(data: Any, path: str, depth: int, counter: list[int]) -> Group:
    if not isinstance(data, Mapping):
        raise SegmentError(path, "a group is a table with one key, all or any")
    keys = sorted(data)
    if keys not in (["all"], ["any"]):
        raise SegmentError(path, f"a group has exactly one key, all or any (got {keys})")
    if depth > MAX_DEPTH:
        raise SegmentError(path, f"groups nest at most {MAX_DEPTH} deep")
    mode = keys[0]
    items = data[mode]
    here = f"{path}.{mode}" if path else mode
    if not isinstance(items, list):
        raise SegmentError(here, "must be a list of conditions or groups")
    if mode == "any" and not items:
        raise SegmentError(here, "an any group needs at least one item")
    parsed: list[Condition | Group] = []
    for i, item in enumerate(items):
        at = f"{here}[{i}]"
        counter[0] += 1
        if counter[0] > MAX_ITEMS:
            raise SegmentError(at, f"a rule has at most {MAX_ITEMS} conditions and groups")
        if isinstance(item, Mapping) and "field" not in item:
            parsed.append(_group(item, at, depth + 1, counter))
        else:
            parsed.append(_condition(item, at))
    return Group(mode=mode, items=tuple(parsed))


def _condition(item: Any, path: str) -> Condition:
    if not isinstance(item, Mapping):
        raise SegmentError(path, "a condition is a table with a field key")
    name = item.get("field")
    model = FIELDS.get(name) if isinstance(name, str) else None
    if model is None:
        raise SegmentError(f"{path}.field", f"unknown field {name!r} (known: {', '.join(FIELDS)})")
    try:
        return model.model_validate(dict(item))  # type: ignore[return-value]
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(p) for p in error["loc"])
        problem = str(error["msg"]).removeprefix("Value error, ")
        raise SegmentError(f"{path}.{loc}" if loc else path, problem) from None


def dump_rule(rule: SegmentRule) -> dict[str, Any]:
    """The rule as JSON data (what ``parse_rule`` reads back to the same rule)."""
    items: list[dict[str, Any]] = []
    for item in rule.items:
        if isinstance(item, Group):
            items.append(dump_rule(item))
        else:
            items.append(item.model_dump(mode="json", by_alias=True, exclude_defaults=True))
    return {rule.mode: items}
