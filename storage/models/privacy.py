"""Verified phone binding and the merge requests staff decide (DESIGN §9)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from storage.models.members import Member


class PhoneVerification(Model):
    """A one-time code sent to a number a member wants to bind.

    Only a keyed hash of the code is stored. A code lives until ``expires_at``, allows a
    few tries, and ends verified, failed (out of tries), expired or superseded.
    """

    id = fields.BigIntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="phone_verifications", on_delete=fields.RESTRICT
    )
    mobile_cipher = fields.TextField()
    mobile_hash = fields.CharField(max_length=64, db_index=True)
    code_hash = fields.CharField(max_length=64)
    tries = fields.IntField(default=0)
    status = fields.CharField(max_length=12, default="pending")
    expires_at = fields.DatetimeField()
    verified_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "phone_verification"


class MergeRequest(Model):
    """A verified number held by another member with a chat identity: staff decide.

    ``pending_key`` is set while the request is pending and cleared when it is decided,
    so one pair of members has at most one pending request (a unique key, not a check).
    """

    id = fields.BigIntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="merge_requests", on_delete=fields.RESTRICT
    )
    holder: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="merge_requests_held", on_delete=fields.RESTRICT
    )
    mobile_hash = fields.CharField(max_length=64)
    pending_key = fields.CharField(max_length=64, null=True, unique=True)
    status = fields.CharField(max_length=10, default="pending", db_index=True)
    reason = fields.CharField(max_length=255, default="")
    decided_by = fields.CharField(max_length=64, default="")
    decided_at = fields.DatetimeField(null=True)
    merge_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "merge_request"
