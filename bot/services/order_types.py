"""Orders' types: how callers name buyers and orders, the answers, the typed errors,
the idempotency keys and the content fingerprint (shared by the API and the import)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from storage.timeutil import utc

RefKind = Literal["openid", "unionid", "mobile", "member_code"]
MAX_ID = 128  # Order.external_id, OrderRefund.refund_id


class OrderError(Exception):
    """Base of the order service's typed errors."""


class UnknownMember(OrderError):
    """No member matches the order's member reference."""


class UnknownAccount(OrderError):
    """An openid under an Official Account the settings do not name."""


class OrderNotFound(OrderError):
    """No order with this external id."""


class OrderConflict(OrderError):
    """The external id already names an order with other content."""


class RefundConflict(OrderError):
    """The refund id already names a refund of another amount."""


class RefundExceedsOrder(OrderError):
    """The refunds would add up to more than the order's amount."""


@dataclass(frozen=True, slots=True)
class MemberLookup:
    """How the caller names the buyer: one identifier (``account`` only for openids)."""

    kind: RefKind
    value: str
    account: str = ""


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A purchase as the caller sends it."""

    external_id: str
    member: MemberLookup
    amount_fen: int
    paid_at: datetime
    channel: str = ""
    store: str = ""


@dataclass(frozen=True, slots=True)
class RefundView:
    """One refund and what it took back."""

    refund_id: str
    amount_fen: int
    points_reversed: int
    growth_reversed: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as the API answers it, with the member's totals now."""

    external_id: str
    member_code: str
    amount_fen: int
    refunded_fen: int
    channel: str
    store: str
    paid_at: datetime
    points: int
    points_reversed: int
    growth: int
    growth_reversed: int
    base: int
    tier_multiplier: int
    day_multiplier: int
    balance: int
    debt: int
    source: str
    created_at: datetime
    refunds: list[RefundView] = field(default_factory=list)
    duplicate: bool = False
    # set on a refund's answer: that refund and the coupons the full refund restored
    refund: RefundView | None = None
    restored_coupons: list[str] = field(default_factory=list)


def order_key(external_id: str) -> str:
    """The idempotency key of an order's earning and growth entries."""
    return f"order:{external_id}"


def refund_key(refund_row_id: int) -> str:
    """The idempotency key of a refund's reversal and growth entries (short: by row id)."""
    return f"order-refund:{refund_row_id}"


def fingerprint(
    member_ref: str, amount_fen: int, channel: str, store: str, paid_at: datetime
) -> str:
    """sha256 over the order's canonical content (the member reference already canonical)."""
    canonical = [member_ref, amount_fen, channel, store, utc_iso(paid_at)]
    text = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def utc_iso(moment: datetime) -> str:
    """The instant in UTC as ISO text (one spelling per instant)."""
    return utc(moment).isoformat()


def rate(value: float) -> Fraction:
    """A configured decimal rate exactly as written (0.1 is one tenth, not a binary float)."""
    return Fraction(Decimal(str(value)))
