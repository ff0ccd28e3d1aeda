"""The points ledger, growth, sign-ins and orders: money-like, append-only, keyed."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from storage.models.members import Member


class PointsEntry(Model):
    """One ledger entry (append-only), written once per idempotency key.

    Kinds: earn, spend, expire, reverse, adjust. ``amount`` is signed; ``base`` and the
    multipliers (per mille) record how an award was computed (awards round down).
    """

    id = fields.BigIntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="points_entries", on_delete=fields.RESTRICT
    )
    idempotency_key = fields.CharField(max_length=191, unique=True)
    kind = fields.CharField(max_length=8)
    amount = fields.BigIntField()
    base = fields.BigIntField(default=0)
    tier_multiplier = fields.IntField(default=1000)
    day_multiplier = fields.IntField(default=1000)
    reason = fields.CharField(max_length=128, default="")
    source = fields.CharField(max_length=32, default="")
    ref = fields.CharField(max_length=128, default="")
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "points_entry"


class PointsLot(Model):
    """Points earned together that expire together, open until an expiry entry closes it."""

    id = fields.BigIntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="points_lots", on_delete=fields.RESTRICT
    )
    entry: fields.ForeignKeyRelation[PointsEntry] = fields.ForeignKeyField(
        "models.PointsEntry", related_name="lots", on_delete=fields.RESTRICT
    )
    amount = fields.BigIntField()
    remaining = fields.BigIntField()
    expires_at = fields.DatetimeField(db_index=True)
    closed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "points_lot"


class PointsAllocation(Model):
    """How much of a lot an entry (spend, expiry, debt settlement) consumed."""

    id = fields.BigIntField(primary_key=True)
    entry: fields.ForeignKeyRelation[PointsEntry] = fields.ForeignKeyField(
        "models.PointsEntry", related_name="allocations", on_delete=fields.RESTRICT
    )
    lot: fields.ForeignKeyRelation[PointsLot] = fields.ForeignKeyField(
        "models.PointsLot", related_name="allocations", on_delete=fields.RESTRICT
    )
    amount = fields.BigIntField()

    class Meta:
        table = "points_allocation"


class GrowthEntry(Model):
    """Growth value earned (never spent), which drives tiers."""

    id = fields.BigIntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="growth_entries", on_delete=fields.RESTRICT
    )
    idempotency_key = fields.CharField(max_length=191, unique=True)
    amount = fields.BigIntField()
    reason = fields.CharField(max_length=128, default="")
    source = fields.CharField(max_length=32, default="")
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "growth_entry"


class SignIn(Model):
    """A daily sign-in, at most one per member and business-local day."""

    id = fields.BigIntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="sign_ins", on_delete=fields.RESTRICT
    )
    day = fields.DateField()
    streak = fields.IntField()
    points = fields.BigIntField(default=0)
    created_at = fields.DatetimeField()

    class Meta:
        table = "sign_in"
        unique_together = (("member", "day"),)


class Order(Model):
    """A purchase from any channel (POS, e-commerce), money in integer fen."""

    id = fields.BigIntField(primary_key=True)
    external_id = fields.CharField(max_length=128, unique=True)
    member: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="orders", null=True, on_delete=fields.RESTRICT
    )
    amount_fen = fields.BigIntField()
    refunded_fen = fields.BigIntField(default=0)
    channel = fields.CharField(max_length=32, default="")
    store = fields.CharField(max_length=64, default="")
    paid_at = fields.DatetimeField()
    # what the order earned and what refunds took back (points and growth)
    points = fields.BigIntField(default=0)
    points_reversed = fields.BigIntField(default=0)
    growth = fields.BigIntField(default=0)
    growth_reversed = fields.BigIntField(default=0)
    # sha256 of the canonical content: the same id with other content is a conflict
    fingerprint = fields.CharField(max_length=64, default="")
    source = fields.CharField(max_length=16, default="api")
    created_at = fields.DatetimeField()

    class Meta:
        table = "orders"


class OrderRefund(Model):
    """One refund of an order, keyed by the caller's refund id (idempotent)."""

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="refunds", on_delete=fields.RESTRICT
    )
    refund_id = fields.CharField(max_length=128)
    amount_fen = fields.BigIntField()
    points_reversed = fields.BigIntField(default=0)
    growth_reversed = fields.BigIntField(default=0)
    created_at = fields.DatetimeField()

    class Meta:
        table = "order_refund"
        unique_together = (("order", "refund_id"),)
