"""Models of the WeChat plumbing: inbound events, shared tokens, the outbox."""

from __future__ import annotations

from typing import Any

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


class PlatformToken(Model):
    """A WeChat access token shared by every process when there is no Redis.

    ``version`` makes refreshes conditional updates; ``refresh_until`` is the lease the
    one refresher holds, so a CLI process and the server never retire each other's token.
    """

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=128, unique=True)
    token = fields.CharField(max_length=1024, default="")
    expires_at = fields.FloatField(default=0)
    version = fields.IntField(default=0)
    refresh_until = fields.FloatField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "platform_token"


class OutboxMessage(Model):
    """One outbound message to one recipient: the unit of work of the outbound engine.

    Status: pending → sending → sent | failed | unknown (a sender died mid-call: never
    re-sent) | submitted | awaiting_staff; ``held`` rows wait for their group to be
    released (the WeCom rows of one SOP run, sent as one task per staff member);
    ``unreachable`` rows were never sendable (the reason says why).

    ``kind`` is ``service`` or ``marketing`` (the marketing cap counts these rows);
    ``group_key`` bundles rows into one platform task (WeCom ``add_msg_template`` per
    ``staff_userid``, mass send); ``external_ref`` is the platform's id for the call that
    carried the row (msgid, msg_id), used to reconcile results.
    """

    id = fields.BigIntField(primary_key=True)
    idempotency_key = fields.CharField(max_length=255, unique=True)
    channel = fields.CharField(max_length=24)
    account = fields.CharField(max_length=64)
    recipient = fields.CharField(max_length=128, db_index=True)
    member_id = fields.BigIntField(null=True, db_index=True)
    source = fields.CharField(max_length=32)
    kind = fields.CharField(max_length=10, default="service")
    group_key = fields.CharField(max_length=128, default="", db_index=True)
    staff_userid = fields.CharField(max_length=64, default="")
    external_ref = fields.CharField(max_length=128, default="", db_index=True)
    payload: fields.Field[dict[str, Any]] = fields.JSONField()
    status = fields.CharField(max_length=16, default="pending")
    reason = fields.CharField(max_length=255, default="")
    attempts = fields.IntField(default=0)
    due_at = fields.DatetimeField()
    claimed_by = fields.CharField(max_length=64, default="")
    lease_until = fields.DatetimeField(null=True)
    sent_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "outbox_message"
        indexes = (("status", "due_at"), ("member_id", "kind", "created_at"))
