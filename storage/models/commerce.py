"""The points mall: rewards, redemptions and the coupons they issue."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from storage.models.members import Member


class Reward(Model):
    """A reward in the points mall, from the settings or the admin API.

    ``stock`` NULL means unlimited; ``per_member_limit`` 0 means no limit. The coupon it
    issues is worth ``coupon_value_fen`` off, or ``coupon_discount`` per mille of the price
    (850 is 15 percent off), valid for ``coupon_valid_days`` from issue.
    """

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=64)
    description = fields.CharField(max_length=256, default="")
    cost_points = fields.BigIntField()
    stock = fields.BigIntField(null=True)
    per_member_limit = fields.IntField(default=0)
    coupon_value_fen = fields.BigIntField(default=0)
    coupon_discount = fields.IntField(default=0)
    coupon_valid_days = fields.IntField(default=30)
    available_from = fields.DatetimeField(null=True)
    available_to = fields.DatetimeField(null=True)
    active = fields.BooleanField(default=True)
    sort_order = fields.IntField(default=0)
    source = fields.CharField(max_length=8, default="config")
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "reward"


class Redemption(Model):
    """A member bought a reward with points: the spend entry and the coupon issued."""

    id = fields.BigIntField(primary_key=True)
    idempotency_key = fields.CharField(max_length=191, unique=True)
    reward: fields.ForeignKeyRelation[Reward] = fields.ForeignKeyField(
        "models.Reward", related_name="redemptions", on_delete=fields.RESTRICT
    )
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="redemptions", on_delete=fields.RESTRICT
    )
    points = fields.BigIntField()
    entry_id = fields.BigIntField()
    channel = fields.CharField(max_length=32, default="")
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "redemption"


class Coupon(Model):
    """A coupon: code from a CSPRNG, a value in fen or a discount, and a validity window.

    States: issued, then used, expired or voided. ``used_order_id`` is the external order
    id it was used on (the till's redemption is idempotent on it); refunding that order
    in full restores the coupon.
    """

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=16, unique=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="coupons", on_delete=fields.RESTRICT
    )
    reward: fields.ForeignKeyNullableRelation[Reward] = fields.ForeignKeyField(
        "models.Reward", related_name="coupons", null=True, on_delete=fields.RESTRICT
    )
    redemption: fields.ForeignKeyNullableRelation[Redemption] = fields.ForeignKeyField(
        "models.Redemption", related_name="coupons", null=True, on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=64)
    value_fen = fields.BigIntField(default=0)
    discount = fields.IntField(default=0)
    valid_from = fields.DatetimeField()
    valid_to = fields.DatetimeField(db_index=True)
    state = fields.CharField(max_length=8, default="issued", db_index=True)
    source = fields.CharField(max_length=16, default="redemption")
    used_at = fields.DatetimeField(null=True)
    used_order_id = fields.CharField(max_length=128, null=True, db_index=True)
    used_by = fields.CharField(max_length=64, default="")
    voided_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "coupon"
