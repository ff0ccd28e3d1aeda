"""Tortoise models. Correctness lives in unique constraints and transactions.

Schema changes ship as tortoise's built-in migrations in ``storage/migrations/``.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class InboundEvent(Model):
    """One processed callback: its dedupe key, what it was and how it ended.

    The payload is the decrypted XML with mobile numbers masked; rows are purged after
    ``[business] inbound_retention_days``.
    """

    id = fields.BigIntField(primary_key=True)
    dedupe_key = fields.CharField(max_length=255, unique=True)
    platform = fields.CharField(max_length=8)
    account = fields.CharField(max_length=64)
    kind = fields.CharField(max_length=96)
    sender = fields.CharField(max_length=128, db_index=True)
    member_id = fields.BigIntField(null=True)
    outcome = fields.CharField(max_length=16)
    handler_ms = fields.IntField(default=0)
    payload = fields.TextField()
    received_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "inbound_event"
