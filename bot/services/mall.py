"""The points mall (积分商城): rewards from the settings or the API, redeemed for coupons.

``redeem`` is one transaction (``storage.repos.mall.redeem``): the member row locked
first, the per-member limit counted under that lock, the stock decremented only while
some is left, the points spent from lots through the ledger, then the Redemption and its
Coupon. Any refusal rolls all of it back. The idempotency key comes from the chat event,
so a WeChat retry of the same message answers the first redemption instead of a second.

Configured rewards (``[[rewards]]``) are upserted by code when the app starts: their
name, cost, limit, coupon and window follow the settings, their stock is set only when
first created (a restart never refills it); rewards created through the API (source
``api``) are left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from tortoise.exceptions import IntegrityError

from bot.clock import BusinessClock
from bot.config import Settings
from bot.services import points
from storage.models import Coupon, Member, Reward
from storage.repos import coupons
from storage.repos import mall as repo
from storage.repos.mall import IssuedRedemption, RewardRow

__all__ = ["Catalogue", "IssuedRedemption", "MallService", "Redeemed", "RewardRow"]

log = logging.getLogger("bot.mall")


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What 积分商城 shows: the rewards on offer and the member's balance."""

    rewards: list[RewardRow]
    balance: int


@dataclass(frozen=True, slots=True)
class Redeemed:
    """The outcome of 兑换: ``issued`` on success (``duplicate`` on a repeat), else
    ``refused`` is unknown, unavailable, limit, out_of_stock or insufficient."""

    issued: IssuedRedemption | None = None
    refused: str = ""
    duplicate: bool = False
    balance: int = 0
    cost: int = 0
    limit: int = 0


class _Replay(Exception):
    """The ledger already holds this key's spend: roll back and answer the first one."""


class MallService:
    """Lists rewards, redeems them, lists a member's coupons."""

    def __init__(self, settings: Settings, clock: BusinessClock) -> None:
        self.settings = settings
        self.clock = clock

    async def sync_config(self, now: datetime) -> tuple[int, int]:
        """Upsert ``[[rewards]]`` by code; (created, updated)."""
        created, updated = await repo.upsert_config(list(self.settings.rewards), now)
        if created or updated:
            log.info(
                "rewards from settings",
                extra={"rewards_created": created, "rewards_updated": updated},
            )
        return created, updated

    async def catalogue(self, member_id: int, now: datetime) -> Catalogue:
        """The rewards on offer now and the member's balance."""
        return Catalogue(await repo.available_rewards(now), await _balance(member_id))

    def valid_to(self, reward: Reward, now: datetime) -> datetime:
        """The end of the business day ``coupon_valid_days`` after ``now``."""
        last = (now.astimezone(self.settings.tz) + timedelta(days=reward.coupon_valid_days)).date()
        return datetime.combine(last + timedelta(days=1), time(), self.settings.tz)

    async def redeem(
        self, member_id: int, code: str, key: str, now: datetime, channel: str = "chat"
    ) -> Redeemed:
        """Redeem a reward by code under an idempotency key; nothing changes on refusal."""
        found = await repo.find_redemption(key)
        if found is not None:
            return await _repeat(found, member_id)

        async def spend(member: int, amount: int) -> int:
            result = await points.spend(
                member, amount, key, now=now, reason="redeem", source="mall", ref=code[:128]
            )
            if result.duplicate:
                raise _Replay
            return result.entry_id

        spec = repo.RedeemSpec(member_id, code, key, now, lambda r: self.valid_to(r, now), channel)
        try:
            issued = await repo.redeem(spec, spend)
        except repo.RedeemRefused as refused:
            return await _refusal(refused.reason, refused.reward, member_id)
        except points.InsufficientPoints:
            reward = await Reward.get_or_none(code=repo.normal_code(code))
            return await _refusal("insufficient", reward, member_id)
        except (_Replay, points.KeyReused, IntegrityError):
            again = await repo.find_redemption(key)
            if again is None:
                raise
            return await _repeat(again, member_id)
        return Redeemed(issued=issued, balance=await _balance(member_id))

    async def coupons(self, member_id: int, now: datetime) -> list[Coupon]:
        """The member's unused coupons that are still valid, soonest to expire first."""
        return await coupons.unused_for_member(member_id, now)


async def _balance(member_id: int) -> int:
    member = await Member.get_or_none(id=member_id).only("id", "points_balance")
    return 0 if member is None else int(member.points_balance)


async def _repeat(found: IssuedRedemption, member_id: int) -> Redeemed:
    return Redeemed(issued=found, duplicate=True, balance=await _balance(member_id))


async def _refusal(reason: str, reward: Reward | None, member_id: int) -> Redeemed:
    return Redeemed(
        refused=reason,
        balance=await _balance(member_id),
        cost=0 if reward is None else int(reward.cost_points),
        limit=0 if reward is None else int(reward.per_member_limit),
    )
