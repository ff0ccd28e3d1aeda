"""A human description of each segment condition (for ``explain`` and previews)."""

from __future__ import annotations

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
    Tags,
    Tier,
    TotalSpend,
    WecomCustomer,
)

__all__ = ["describe"]


def _range(what: str, low: int | None, high: int | None, unit: str = "") -> str:
    if low is not None and high is not None:
        return f"{what} between {low}{unit} and {high}{unit}"
    if low is not None:
        return f"{what} at least {low}{unit}"
    return f"{what} at most {high}{unit}"


def _tags(cond: Tags) -> str:
    parts = []
    if cond.any:
        parts.append(f"any of {', '.join(cond.any)}")
    if cond.all:
        parts.append(f"all of {', '.join(cond.all)}")
    if cond.none:
        parts.append(f"none of {', '.join(cond.none)}")
    return "tags: " + "; ".join(parts)


def _last_purchase(cond: LastPurchase) -> str:
    parts = []
    if cond.within_days is not None:
        parts.append(f"a purchase in the last {cond.within_days} days")
    if cond.before_days is not None:
        parts.append(f"purchases, none in the last {cond.before_days} days")
    return " and ".join(parts)


def _rfm(cond: Rfm) -> str:
    named = (("recency", cond.recency), ("frequency", cond.frequency))
    parts = [f"{n} {'/'.join(map(str, s))}" for n, s in (*named, ("monetary", cond.monetary)) if s]
    return "RFM quintile " + ", ".join(parts)


def _joined(cond: Joined) -> str:
    if cond.from_ and cond.to:
        return f"joined {cond.from_} to {cond.to}"
    return f"joined on or after {cond.from_}" if cond.from_ else f"joined on or before {cond.to}"


def describe(cond: Condition) -> str:
    """One line saying what the condition asks for."""
    match cond:
        case Tier():
            return f"tier in {', '.join(cond.in_)}"
        case Tags():
            return _tags(cond)
        case Points():
            return _range("points balance", cond.min, cond.max)
        case Growth():
            return _range("growth", cond.min, cond.max)
        case InactiveDays():
            return _range("inactive", cond.min, cond.max, " days")
        case LastPurchase():
            return _last_purchase(cond)
        case TotalSpend():
            return _range("total spend", cond.min_fen, cond.max_fen, " fen")
        case BirthdayMonth():
            return f"birthday in month {', '.join(map(str, cond.in_))}"
        case Channel():
            return f"channel in {', '.join(cond.in_)}"
        case Joined():
            return _joined(cond)
        case Followed():
            where = f" {cond.account}" if cond.account else " an"
            return f"{'follows' if cond.is_ else 'does not follow'}{where} Official Account"
        case WecomCustomer():
            return "a WeCom customer" if cond.is_ else "not a WeCom customer"
        case Rfm():
            return _rfm(cond)
    raise TypeError(f"no description for {type(cond).__name__}")
