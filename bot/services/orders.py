"""Orders from the till or the shop: points and growth once per order, refunds reversed.

An order is one transaction: the order row (its unique external id decides duplicates
and races), the keyed earning (entry, lot, debt settled first), the growth entry (the
tier rises at once), the member's last activity and the audit row. The ledger's own
transactions are savepoints inside it. The same external id with the same content is
answered again (``duplicate``); with other content it is a conflict.

Pricing is exact in integers: ``base = floor(amount_fen × points_per_yuan / 100)`` points,
then ``points = floor(base × tier × member day)`` with the multipliers per mille as the
ledger records them; ``growth = floor(amount_fen × growth_per_yuan / 100)``.

A refund adds to the order's refunded total under the order's row lock and reverses
``floor(points × refunded_total / amount) − already_reversed`` (growth the same way), so
partial refunds adding up to the whole amount take back exactly the order's points.
Spent points become debt that the next earning settles (the ledger does that); growth
goes down but the tier stays until the yearly evaluation. Refunded in full, the coupons
used on the order are restored in the same transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime
from typing import TypeVar

from tortoise.exceptions import IntegrityError, OperationalError
from tortoise.transactions import in_transaction

from bot.clock import BusinessClock
from bot.config import Settings
from bot.services import calendar, points
from bot.services.order_types import (
    MAX_ID,
    MemberLookup,
    NewOrder,
    OrderConflict,
    OrderError,
    OrderNotFound,
    OrderView,
    RefundConflict,
    RefundExceedsOrder,
    RefundView,
    UnknownAccount,
    UnknownMember,
    fingerprint,
    order_key,
    rate,
    refund_key,
)
from bot.services.pii import MobileVault
from bot.services.tiers import TierService
from storage.models import Order, OrderRefund
from storage.models.members import MOBILE_HASH
from storage.repos import audit_log, coupons
from storage.repos import orders as repo
from storage.repos import tiers as tiers_repo
from storage.repos.orders import Holder, Pricing

__all__ = [
    "MAX_ID",
    "MemberLookup",
    "NewOrder",
    "OrderConflict",
    "OrderError",
    "OrderNotFound",
    "OrderService",
    "OrderView",
    "Pricing",
    "RefundConflict",
    "RefundExceedsOrder",
    "RefundView",
    "UnknownAccount",
    "UnknownMember",
    "fingerprint",
    "order_key",
]


class OrderService:
    """Create orders, refund them, and read them back."""

    def __init__(
        self, settings: Settings, clock: BusinessClock, tiers: TierService, vault: MobileVault
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.tiers = tiers
        self.vault = vault
        # pricing runs per imported row: rates as integer ratios, multipliers looked up once
        points_rate = rate(settings.points.points_per_yuan)
        growth_rate = rate(settings.points.growth_per_yuan)
        self._points_rate = (points_rate.numerator, points_rate.denominator * 100)
        self._growth_rate = (growth_rate.numerator, growth_rate.denominator * 100)
        self._tz = settings.tz
        membership = settings.membership
        self._tiers = {t.code: t.multiplier_per_mille for t in membership.tiers}
        self._lowest = membership.tiers[0].multiplier_per_mille
        self._ranks = {t.code: i for i, t in enumerate(membership.tiers)}
        self._days: dict[date, int] = {}

    # --- members and pricing -----------------------------------------------------------

    def member_ref(self, lookup: MemberLookup) -> str:
        """The canonical text of a member reference (mobiles by their keyed hash)."""
        if lookup.kind == "openid":
            return f"openid:{self.appid(lookup.account)}:{lookup.value}"
        if lookup.kind == "mobile":
            return f"mobile:{self.vault.lookup_hash(lookup.value)}"
        if lookup.kind == "member_code":
            return f"member_code:{lookup.value.strip().upper()}"
        return f"unionid:{lookup.value}"

    def appid(self, account: str) -> str:
        """The AppID of an Official Account by name (default: the first configured)."""
        name = account or next(iter(self.settings.accounts), "")
        found = self.settings.accounts.get(name)
        if found is None:
            raise UnknownAccount(f"no Official Account named {name!r}")
        return found.appid

    async def find_member(self, lookup: MemberLookup, *, now: datetime, channel: str) -> Holder:
        """The buyer; an unknown mobile number becomes a member holding only that number."""
        if lookup.kind == "openid":
            found = await repo.holder_by_identity(
                "oa_openid", self.appid(lookup.account), lookup.value
            )
        elif lookup.kind == "unionid":
            found = await repo.holder_by_identity("unionid", None, lookup.value)
        elif lookup.kind == "member_code":
            found = await repo.holder_by_code(lookup.value)
        else:
            digest = self.vault.lookup_hash(lookup.value)
            found = await repo.holder_by_identity(MOBILE_HASH, "", digest)
            if found is None:
                cipher = self.vault.encrypt(self.vault.normalize(lookup.value))
                found = await repo.create_mobile_member(cipher, digest, now, f"order:{channel}")
        if found is None:
            raise UnknownMember(f"no member with this {lookup.kind}")
        return found

    def price(self, tier: str, amount_fen: int, paid_at: datetime) -> Pricing:
        """Points and growth for an amount, the member's tier and the paid day."""
        base = amount_fen * self._points_rate[0] // self._points_rate[1]
        tier_multiplier = self._tiers.get(tier, self._lowest)
        day = paid_at.astimezone(self._tz).date()
        day_multiplier = self._days.get(day)
        if day_multiplier is None:
            day_multiplier = calendar.day_multiplier(self.settings.member_day, day)
            self._days[day] = day_multiplier
        awarded = points.award(base, tier_multiplier, day_multiplier) if base > 0 else 0
        growth = amount_fen * self._growth_rate[0] // self._growth_rate[1]
        return Pricing(base, tier_multiplier, day_multiplier, awarded, growth)

    def raise_tier(self, growth: int, tier: str) -> str | None:
        """The higher tier ``growth`` reaches, or None (orders never lower a tier)."""
        reached = self.settings.membership.tier_for_growth(growth).code
        return reached if self._ranks[reached] > self._ranks.get(tier, 0) else None

    # --- create ------------------------------------------------------------------------

    async def create(self, order: NewOrder, actor: str, *, source: str = "api") -> OrderView:
        """Record an order once; a repeat with the same content is answered again."""
        _check_order(order)
        ref = self.member_ref(order.member)
        print_ = fingerprint(ref, order.amount_fen, order.channel, order.store, order.paid_at)
        existing = await repo.find(order.external_id)
        if existing is not None:
            return await self._again(existing, print_)
        now = self.clock.now()
        holder = await self.find_member(order.member, now=now, channel=order.channel)
        pricing = self.price(holder.tier, order.amount_fen, order.paid_at)
        try:
            upgraded = await _deadlock_retry(
                lambda: self._write(order, holder, pricing, (print_, source), actor, now)
            )
        except IntegrityError:
            existing = await repo.find(order.external_id)
            if existing is None:
                raise
            return await self._again(existing, print_)
        if upgraded:  # the tier notice goes out after the commit, keyed by the entry
            await self.send_growth_notice(holder.id, pricing.growth, order.external_id, now)
        return await self.view(order.external_id)

    async def _write(
        self,
        order: NewOrder,
        holder: Holder,
        pricing: Pricing,
        stamp: tuple[str, str],
        actor: str,
        now: datetime,
    ) -> bool:
        """The order's one transaction; True when its growth raised the tier."""
        key = order_key(order.external_id)
        print_, source = stamp
        upgraded = False
        async with in_transaction():
            await repo.insert(
                {
                    "external_id": order.external_id,
                    "member_id": holder.id,
                    "amount_fen": order.amount_fen,
                    "channel": order.channel,
                    "store": order.store,
                    "paid_at": order.paid_at,
                    "points": pricing.points,
                    "growth": pricing.growth,
                    "fingerprint": print_,
                    "source": source,
                    "created_at": now,
                }
            )
            if pricing.points:
                await points.earn(
                    holder.id,
                    pricing.base,
                    key,
                    now=now,
                    expires_at=points.lot_expiry(now, self.settings.tz),
                    reason="order",
                    source="order",
                    tier_multiplier=pricing.tier_multiplier,
                    day_multiplier=pricing.day_multiplier,
                    ref=order.external_id,
                )
            if pricing.growth:
                spec = tiers_repo.GrowthSpec(holder.id, key, pricing.growth, now, "order", "order")
                applied = await tiers_repo.write_growth(spec, self.raise_tier)
                upgraded = applied.tier != applied.previous_tier
            await repo.touch_member(holder.id, min(order.paid_at, now))
            await audit_log.record(
                actor,
                repo.CREATE,
                repo.order_target(order.external_id),
                {
                    "member": holder.code,
                    "amount_fen": order.amount_fen,
                    "points": pricing.points,
                    "growth": pricing.growth,
                    "base": pricing.base,
                    "tier_multiplier": pricing.tier_multiplier,
                    "day_multiplier": pricing.day_multiplier,
                },
                now,
            )
        return upgraded

    async def _again(self, existing: Order, print_: str) -> OrderView:
        """The answer to a repeat: the first result, or a conflict."""
        if existing.fingerprint != print_:
            raise OrderConflict(f"order {existing.external_id} exists with other content")
        member_id: int | None = existing.member_id  # type: ignore[attr-defined]
        if existing.growth and member_id is not None and existing.source == "api":
            # the first call may have died between its commit and its tier notice
            await self.send_growth_notice(
                member_id,
                int(existing.growth),
                existing.external_id,
                self.clock.now(),
            )
        return replace(await self.view(existing.external_id), duplicate=True)

    async def send_growth_notice(
        self, member_id: int, growth: int, external_id: str, now: datetime
    ) -> None:
        """Send the tier notice of an upgrade an order's growth entry caused, if it did.

        The entry exists, so ``add_growth`` answers as a duplicate: it finds the upgrade by
        the entry's key and enqueues its notice once (the notice is keyed too).
        """
        await self.tiers.add_growth(
            member_id, growth, order_key(external_id), now=now, reason="order", source="order"
        )

    # --- refund ------------------------------------------------------------------------

    async def refund(
        self, external_id: str, refund_id: str, amount_fen: int, actor: str
    ) -> OrderView:
        """Refund part or all of an order once per refund id."""
        if amount_fen <= 0:
            raise ValueError("amount_fen must be positive")
        if not refund_id or len(refund_id) > MAX_ID:
            raise ValueError(f"refund_id must be 1 to {MAX_ID} characters")
        order = await repo.find(external_id)
        if order is None:
            raise OrderNotFound(external_id)
        existing = await repo.find_refund(int(order.id), refund_id)
        if existing is not None:
            return await self._refund_again(order, existing, amount_fen)
        now = self.clock.now()
        try:
            restored = await _deadlock_retry(
                lambda: self._write_refund(order, refund_id, amount_fen, actor, now)
            )
        except IntegrityError:
            existing = await repo.find_refund(int(order.id), refund_id)
            if existing is None:
                raise
            return await self._refund_again(order, existing, amount_fen)
        view = await self.view(external_id)
        return _with_refund(view, refund_id, restored, duplicate=False)

    async def _write_refund(
        self, order: Order, refund_id: str, amount_fen: int, actor: str, now: datetime
    ) -> list[str]:
        """The refund's one transaction; the coupon codes a full refund restored."""
        member_id: int | None = order.member_id  # type: ignore[attr-defined]
        async with in_transaction() as tx:
            row_id = await repo.insert_refund(int(order.id), refund_id, amount_fen, now)
            totals = await repo.add_refunded(tx, int(order.id), amount_fen)
            if totals is None:
                raise RefundExceedsOrder(
                    f"refunds of order {order.external_id} would exceed {order.amount_fen} fen"
                )
            points_due = totals.points * totals.refunded_fen // totals.amount_fen
            growth_due = totals.growth * totals.refunded_fen // totals.amount_fen
            take = points_due - totals.points_reversed
            take_growth = growth_due - totals.growth_reversed
            await repo.set_reversed(tx, int(order.id), points_due, growth_due)
            key = refund_key(row_id)
            if member_id is not None and take > 0:
                await points.reverse(
                    member_id, take, key, now=now, reason="refund", source="order", ref=refund_id
                )
            if member_id is not None and take_growth > 0:
                await self.tiers.reverse_growth(
                    member_id, take_growth, key, now=now, reason="refund", source="order"
                )
            await repo.set_refund_reversed(row_id, take, take_growth)
            restored: list[str] = []
            if totals.refunded_fen == totals.amount_fen:
                restored = await coupons.restore_for_order(order.external_id, now)
            await audit_log.record(
                actor,
                repo.REFUND,
                repo.order_target(order.external_id),
                {
                    "refund_id": refund_id,
                    "amount_fen": amount_fen,
                    "refunded_fen": totals.refunded_fen,
                    "points_reversed": take,
                    "growth_reversed": take_growth,
                    "restored_coupons": restored,
                },
                now,
            )
        return restored

    async def _refund_again(
        self, order: Order, existing: OrderRefund, amount_fen: int
    ) -> OrderView:
        if int(existing.amount_fen) != amount_fen:
            raise RefundConflict(
                f"refund {existing.refund_id} of order {order.external_id} is "
                f"{existing.amount_fen} fen, not {amount_fen}"
            )
        restored = await repo.restored_by(order.external_id, existing.refund_id)
        view = await self.view(order.external_id)
        return _with_refund(view, existing.refund_id, restored, duplicate=True)

    # --- read --------------------------------------------------------------------------

    async def view(self, external_id: str) -> OrderView:
        """The order, its refunds and the member's totals now."""
        order = await repo.find(external_id)
        if order is None:
            raise OrderNotFound(external_id)
        member_id: int | None = order.member_id  # type: ignore[attr-defined]
        holder = await repo.holder_by_id(member_id) if member_id is not None else None
        balance, debt = await repo.totals_of(holder.id) if holder is not None else (0, 0)
        recorded = await repo.entry_multipliers(order_key(external_id))
        base, tier_multiplier, day_multiplier = recorded or (0, points.PER_MILLE, points.PER_MILLE)
        refunds = [
            RefundView(
                r.refund_id,
                int(r.amount_fen),
                int(r.points_reversed),
                int(r.growth_reversed),
                r.created_at,
            )
            for r in await repo.refunds_of(int(order.id))
        ]
        return OrderView(
            external_id=order.external_id,
            member_code=holder.code if holder is not None else "",
            amount_fen=int(order.amount_fen),
            refunded_fen=int(order.refunded_fen),
            channel=order.channel,
            store=order.store,
            paid_at=order.paid_at,
            points=int(order.points),
            points_reversed=int(order.points_reversed),
            growth=int(order.growth),
            growth_reversed=int(order.growth_reversed),
            base=base,
            tier_multiplier=tier_multiplier,
            day_multiplier=day_multiplier,
            balance=balance,
            debt=debt,
            source=order.source,
            created_at=order.created_at,
            refunds=refunds,
        )


def _with_refund(
    view: OrderView, refund_id: str, restored: list[str], *, duplicate: bool
) -> OrderView:
    refund = next((r for r in view.refunds if r.refund_id == refund_id), None)
    return replace(view, refund=refund, restored_coupons=restored, duplicate=duplicate)


def _check_order(order: NewOrder) -> None:
    if not order.external_id or len(order.external_id) > MAX_ID:
        raise ValueError(f"external_id must be 1 to {MAX_ID} characters")
    if order.amount_fen <= 0:
        raise ValueError("amount_fen must be positive")
    if order.paid_at.tzinfo is None or order.paid_at.utcoffset() is None:
        raise ValueError("paid_at must be timezone-aware")


_T = TypeVar("_T")
_DEADLOCK_TRIES = 3


async def _deadlock_retry(write: Callable[[], Awaitable[_T]]) -> _T:
    """Run a write transaction again when PostgreSQL aborted it to break a deadlock (an
    import locking the same members); the transaction rolled back, so a retry is safe."""
    for attempt in range(1, _DEADLOCK_TRIES + 1):
        try:
            return await write()
        except OperationalError as error:
            if attempt == _DEADLOCK_TRIES or "deadlock" not in str(error).lower():
                raise
            await asyncio.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
