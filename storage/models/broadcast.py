"""Models of segments (分群) and broadcasts (群发)."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class Segment(Model):
    """A saved segment rule (all/any groups of conditions), by name.

    ``rule`` is the JSON form the API takes and the TOML form the CLI reads; it compiles
    to SQL over ``member`` (sop.segments), never filtered in Python.
    """

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    description = fields.CharField(max_length=255, default="")
    rule: fields.Field[dict[str, Any]] = fields.JSONField()
    created_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "segment"


class Broadcast(Model):
    """One broadcast: a segment, a channel, one content, a state.

    state: draft → scheduled → sending → paused → done | cancelled. ``rule`` is the
    segment's rule as it was when sending started (later edits of the segment do not
    change who this broadcast reaches). ``reach`` holds the expected reach computed
    before sending (counts and exclusions with reasons); the outbox rows (source
    ``broadcast``, group ``bc:<id>``) are the delivery record.
    """

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=128)
    segment: fields.ForeignKeyNullableRelation[Segment] = fields.ForeignKeyField(
        "models.Segment", related_name="broadcasts", null=True, on_delete=fields.RESTRICT
    )
    segment_id: int | None
    rule: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    channel = fields.CharField(max_length=24)
    account = fields.CharField(max_length=64, default="")
    kind = fields.CharField(max_length=10, default="marketing")
    template = fields.CharField(max_length=64, default="")
    content: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    state = fields.CharField(max_length=12, default="draft", db_index=True)
    scheduled_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    reach: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    created_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "broadcast"


class MassJob(Model):
    """One OA mass-send call (≤ 10,000 openids) of a broadcast and its reported totals.

    ``clientmsgid`` makes the call idempotent (a retry after a timeout is answered with
    the first job); ``msg_id`` is the platform's job id and MASSSENDJOBFINISH fills the
    totals (sent, error, filtered) — mass send reports totals per call, not per member.
    """

    id = fields.BigIntField(primary_key=True)
    broadcast: fields.ForeignKeyRelation[Broadcast] = fields.ForeignKeyField(
        "models.Broadcast", related_name="mass_jobs", on_delete=fields.RESTRICT
    )
    account = fields.CharField(max_length=64)
    clientmsgid = fields.CharField(max_length=64, unique=True)
    msg_id = fields.CharField(max_length=64, default="", db_index=True)
    recipients = fields.IntField(default=0)
    status = fields.CharField(max_length=16, default="pending")
    total_count = fields.IntField(default=0)
    filter_count = fields.IntField(default=0)
    sent_count = fields.IntField(default=0)
    error_count = fields.IntField(default=0)
    finished_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "mass_job"


class BroadcastConfirmation(Model):
    """The one-time code that starts a broadcast drafted in the WeCom agent chat (群发).

    Bound to the staff member who drafted it and to that broadcast, valid until
    ``expires_at`` (business clock); only a SHA-256 digest of ``<userid>:<code>`` is kept.
    ``确认`` takes it with one conditional update (pending and unexpired → used), so two
    confirmations of one code start the broadcast once, whichever processes they reach.
    ``progress`` is the last progress message sent back to that staff member
    (started, half, final).
    """

    id = fields.BigIntField(primary_key=True)
    broadcast: fields.ForeignKeyRelation[Broadcast] = fields.ForeignKeyField(
        "models.Broadcast", related_name="confirmations", on_delete=fields.RESTRICT
    )
    broadcast_id: int
    staff_userid = fields.CharField(max_length=64)
    code_hash = fields.CharField(max_length=64)
    status = fields.CharField(max_length=12, default="pending", db_index=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    progress = fields.CharField(max_length=12, default="")
    created_at = fields.DatetimeField()

    class Meta:
        table = "broadcast_confirmation"
        indexes = (("staff_userid", "code_hash"),)
