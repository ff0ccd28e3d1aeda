"""Rewards and redemptions: the config upsert, the listing and the one-transaction redeem.

A redemption is one transaction that takes the member row first (an UPDATE: a row lock
on PostgreSQL, the write lock on SQLite), so two redemptions of one member take turns
and the per-member count under that lock is exact. Stock is a conditional decrement
(``stock IS NULL OR stock > 0``); points are spent through the ledger, whose own
transaction nests as a savepoint. Any refusal raises inside the transaction, so the
stock decrement and everything else roll back with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from bot.config_commerce import RewardConfig
from storage.models import Coupon, Redemption, Reward
from storage.repos import coupons
from storage.repos.points import UnknownMember
from storage.timeutil import utc

__all__ = [
    "IssuedRedemption",
    "RedeemRefused",
    "RedeemSpec",
    "RewardRow",
    "Spend",
    "available_rewards",
    "config_fields",
    "find_redemption",
    "normal_code",
    "redeem",
    "upsert_config",
]

_LOCK_MEMBER = "UPDATE member SET points_balance = points_balance WHERE id = {} RETURNING id"


class RedeemRefused(Exception):
    """Why a redemption did not happen (nothing was written): ``reason`` is a stable word."""

    def __init__(self, reason: str, reward: Reward | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reward = reward


@dataclass(frozen=True, slots=True)
class RewardRow:
    """A reward as the mall lists it."""

    code: str
    name: str
    description: str
    cost_points: int
    stock: int | None
    per_member_limit: int
    coupon_value_fen: int
    coupon_discount: int
    coupon_valid_days: int


@dataclass(frozen=True, slots=True)
class IssuedRedemption:
    """A redemption and its coupon (found again on a repeat of the same key)."""

    redemption_id: int
    reward_code: str
    reward_name: str
    points: int
    coupon_code: str
    value_fen: int
    discount: int
    valid_from: datetime
    valid_to: datetime


def normal_code(code: str) -> str:
    """Reward codes are stored upper-case and matched case-insensitively."""
    return code.strip().upper()


def _available(now: datetime) -> Q:
    at = utc(now)
    return (
        Q(active=True)
        & (Q(available_from__isnull=True) | Q(available_from__lte=at))
        & (Q(available_to__isnull=True) | Q(available_to__gt=at))
    )


async def available_rewards(now: datetime) -> list[RewardRow]:
    """Active rewards inside their window, in ``sort_order`` then code order."""
    rows = await Reward.filter(_available(now)).order_by("sort_order", "code")
    return [_row(r) for r in rows]


def _row(r: Reward) -> RewardRow:
    return RewardRow(
        r.code,
        r.name,
        r.description,
        int(r.cost_points),
        None if r.stock is None else int(r.stock),
        int(r.per_member_limit),
        int(r.coupon_value_fen),
        int(r.coupon_discount),
        int(r.coupon_valid_days),
    )


def config_fields(config: RewardConfig) -> dict[str, Any]:
    """The columns a ``[[rewards]]`` entry sets on every start (stock is not one of them)."""
    return {
        "name": config.name,
        "description": config.description,
        "cost_points": config.cost_points,
        "per_member_limit": config.per_member_limit,
        "coupon_value_fen": config.coupon_value_fen,
        "coupon_discount": config.discount_per_mille,
        "coupon_valid_days": config.coupon_valid_days,
        "available_from": None if config.available_from is None else utc(config.available_from),
        "available_to": None if config.available_to is None else utc(config.available_to),
        "active": config.active,
    }


async def upsert_config(rewards: list[RewardConfig], now: datetime) -> tuple[int, int]:
    """Create or update the configured rewards by code; (created, updated).

    Stock is set only when a reward is first created, so a restart never refills it;
    rewards created through the API (source ``api``) are never touched. Two instances
    starting at once: the unique code decides who creates, the other updates.
    """
    created = updated = 0
    for order, config in enumerate(rewards):
        code, values = normal_code(config.code), config_fields(config)
        values["sort_order"] = order
        try:
            async with in_transaction():
                await Reward.create(
                    code=code,
                    stock=config.stock,
                    source="config",
                    created_at=now,
                    updated_at=now,
                    **values,
                )
            created += 1
            continue
        except IntegrityError:
            pass
        changed = await Reward.filter(code=code, source="config").update(
            updated_at=utc(now), **values
        )
        updated += changed
    return created, updated


async def find_redemption(key: str) -> IssuedRedemption | None:
    """The redemption written under this idempotency key, with its coupon."""
    redemption = await Redemption.get_or_none(idempotency_key=key).prefetch_related("reward")
    if redemption is None:
        return None
    coupon = await Coupon.filter(redemption_id=redemption.id).first()
    if coupon is None:  # written in one transaction with its redemption: cannot happen
        raise RuntimeError(f"redemption {redemption.id} has no coupon")
    return _issued(redemption, redemption.reward, coupon)


def _issued(redemption: Redemption, reward: Reward, coupon: Coupon) -> IssuedRedemption:
    return IssuedRedemption(
        int(redemption.id),
        reward.code,
        reward.name,
        int(redemption.points),
        coupon.code,
        int(coupon.value_fen),
        int(coupon.discount),
        coupon.valid_from,
        coupon.valid_to,
    )


Spend = Callable[[int, int], Awaitable[int]]
"""``spend(member_id, points)`` → the ledger entry id; raises to refuse."""


@dataclass(frozen=True, slots=True)
class RedeemSpec:
    """One redemption to attempt."""

    member_id: int
    code: str
    key: str
    now: datetime
    valid_to: Callable[[Reward], datetime]
    channel: str = ""


async def redeem(spec: RedeemSpec, spend: Spend) -> IssuedRedemption:
    """Redeem in one transaction; RedeemRefused (nothing written) when it may not happen."""
    async with in_transaction() as tx:
        await _lock_member(tx, spec.member_id)
        reward = await Reward.get_or_none(code=normal_code(spec.code))
        if reward is None:
            raise RedeemRefused("unknown")
        if not await Reward.filter(_available(spec.now), id=reward.id).exists():
            raise RedeemRefused("unavailable", reward)
        if reward.per_member_limit > 0:
            taken = await Redemption.filter(member_id=spec.member_id, reward_id=reward.id).count()
            if taken >= reward.per_member_limit:
                raise RedeemRefused("limit", reward)
        decremented = await Reward.filter(
            Q(stock__isnull=True) | Q(stock__gt=0), id=reward.id
        ).update(stock=F("stock") - 1)
        if not decremented:
            raise RedeemRefused("out_of_stock", reward)
        entry_id = await spend(spec.member_id, int(reward.cost_points))
        redemption = await Redemption.create(
            idempotency_key=spec.key,
            reward_id=reward.id,
            member_id=spec.member_id,
            points=reward.cost_points,
            entry_id=entry_id,
            channel=spec.channel[:32],
            created_at=spec.now,
        )
        coupon = await coupons.issue(
            member_id=spec.member_id,
            name=reward.name,
            value_fen=int(reward.coupon_value_fen),
            discount=int(reward.coupon_discount),
            valid_from=spec.now,
            valid_to=spec.valid_to(reward),
            now=spec.now,
            reward_id=int(reward.id),
            redemption_id=int(redemption.id),
        )
        return _issued(redemption, reward, coupon)


async def _lock_member(tx: BaseDBAsyncClient, member_id: int) -> None:
    sql = _LOCK_MEMBER.format("$1" if tx.capabilities.dialect == "postgres" else "?")
    if not await tx.execute_query_dict(sql, [member_id]):
        raise UnknownMember(member_id)
