"""Models of the SOP engine: one row per fire time, one row per member touch."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class SopRun(Model):
    """One fire time of one SOP: unique (sop id, fire time), so a tick runs once.

    status: ``running`` → ``done`` | ``failed``; ``missed`` for fire times older than
    ``catch_up_grace`` when the runner came back (never run, recorded with a warning).
    ``counts`` holds the run's tallies (selected, claimed, and per outcome).
    """

    id = fields.BigIntField(primary_key=True)
    sop_id = fields.CharField(max_length=64)
    fire_time = fields.DatetimeField()
    status = fields.CharField(max_length=12, default="running")
    trigger = fields.CharField(max_length=12, default="cron")
    runner = fields.CharField(max_length=96, default="")
    counts: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    note = fields.CharField(max_length=255, default="")
    started_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "sop_run"
        unique_together = (("sop_id", "fire_time"),)


class Touchpoint(Model):
    """One SOP touch of one member: unique (sop id, member, occurrence key).

    The row is claimed before anything is sent or granted. The occurrence key names the
    once-per bucket (``2027`` for a birthday, ``2027-03`` for a member day,
    ``reactivation:2027-01-05:30``). status: ``pending`` (due at ``due_at``: delays and
    quiet-hour deferrals) → ``done`` (``outcome`` says how: the outbox channel,
    ``message_skipped: cap``, ``unreachable``, ...) | ``skipped`` (``outcome`` says why).
    ``granted`` turns true in the transaction that credits the action's points, coupon
    and tag, so a retried touch never grants twice.
    """

    id = fields.BigIntField(primary_key=True)
    sop_id = fields.CharField(max_length=64)
    member_id = fields.BigIntField()
    occurrence = fields.CharField(max_length=96)
    run_id = fields.BigIntField(null=True, db_index=True)
    status = fields.CharField(max_length=12, default="pending")
    due_at = fields.DatetimeField()
    attempts = fields.IntField(default=0)
    lease_until = fields.DatetimeField(null=True)
    granted = fields.BooleanField(default=False)
    outcome = fields.CharField(max_length=255, default="")
    outbox_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()
    done_at = fields.DatetimeField(null=True)

    class Meta:
        table = "touchpoint"
        unique_together = (("sop_id", "member_id", "occurrence"),)
        indexes = (("status", "due_at"), ("member_id", "sop_id"))
