"""Members and everything that identifies, tags or audits them (ONE-ID)."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model


class Member(Model):
    """One person in the loyalty programme, whatever channels they use.

    ``points_balance`` and ``points_debt`` are caches of the ledger, updated in the same
    transaction as every ledger write; ``birth_md`` (MMDD) makes birthday audiences an
    indexed lookup.
    """

    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=16, unique=True)
    status = fields.CharField(max_length=8, default="active", db_index=True)
    merged_into_id = fields.BigIntField(null=True)
    tier = fields.CharField(max_length=16, default="basic")
    growth = fields.BigIntField(default=0)
    points_balance = fields.BigIntField(default=0)
    points_debt = fields.BigIntField(default=0)
    birthday = fields.DateField(null=True)
    birth_md = fields.SmallIntField(null=True, db_index=True)
    mobile_cipher = fields.TextField(null=True)
    mobile_hash = fields.CharField(max_length=64, null=True, unique=True)
    channel = fields.CharField(max_length=64, default="")
    name = fields.CharField(max_length=64, default="")
    # cached from the latest marketing Consent row, written in the same transaction
    marketing_opt_out = fields.BooleanField(default=False, db_index=True)
    deleted_at = fields.DatetimeField(null=True)
    referred_by_id = fields.BigIntField(null=True)
    last_active_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "member"


# Identity kinds (the one place they are spelled).
OA_OPENID = "oa_openid"
UNIONID = "unionid"
WECOM_EXTERNAL_USERID = "wecom_external_userid"
MOBILE_HASH = "mobile_hash"
LEGACY_CODE = "legacy_code"


class Identity(Model):
    """An identifier of a member: unique (kind, app, value), app never NULL.

    Kinds: ``oa_openid`` (app = AppID), ``unionid``, ``wecom_external_userid`` (app =
    CorpID), ``mobile_hash``. OA reachability lives here: follow state, the member's last
    message and the customer-service messages sent since (the 48 h / 5 window).
    """

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=24)
    app = fields.CharField(max_length=64, default="")
    value = fields.CharField(max_length=128)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="identities", on_delete=fields.RESTRICT
    )
    followed = fields.BooleanField(default=False)
    followed_at = fields.DatetimeField(null=True)
    unfollowed_at = fields.DatetimeField(null=True)
    last_message_at = fields.DatetimeField(null=True)
    cs_sent_since_message = fields.IntField(default=0)
    last_event_at = fields.DatetimeField(null=True)
    cs_sent_since_event = fields.IntField(default=0)
    created_at = fields.DatetimeField()

    class Meta:
        table = "identity"
        unique_together = (("kind", "app", "value"),)
        indexes = (("member_id",),)  # a member's identities (every notice, merge, erasure)


class MemberMerge(Model):
    """What a merge moved (rows by id per model), so an undo moves exactly that back."""

    id = fields.BigIntField(primary_key=True)
    survivor: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="merges_in", on_delete=fields.RESTRICT
    )
    merged: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="merges_out", on_delete=fields.RESTRICT
    )
    moved: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    status = fields.CharField(max_length=8, default="done")
    actor = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    undone_at = fields.DatetimeField(null=True)

    class Meta:
        table = "member_merge"


class TagGroup(Model):
    """A group of tags, local or mirroring a WeCom corp tag group."""

    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=64)
    source = fields.CharField(max_length=8, default="local")
    wecom_group_id = fields.CharField(max_length=64, null=True, unique=True)
    sort_order = fields.IntField(default=0)
    deleted = fields.BooleanField(default=False)

    class Meta:
        table = "tag_group"


class Tag(Model):
    """A tag (WeCom corp tags keep their WeCom id)."""

    id = fields.BigIntField(primary_key=True)
    group: fields.ForeignKeyRelation[TagGroup] = fields.ForeignKeyField(
        "models.TagGroup", related_name="tags", on_delete=fields.RESTRICT
    )
    name = fields.CharField(max_length=64)
    wecom_tag_id = fields.CharField(max_length=64, null=True, unique=True)
    sort_order = fields.IntField(default=0)
    deleted = fields.BooleanField(default=False)

    class Meta:
        table = "tag"


class MemberTag(Model):
    """A tag on a member with its source (staff, sync, rule, local) and who set it."""

    id = fields.BigIntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="tags", on_delete=fields.RESTRICT
    )
    tag: fields.ForeignKeyRelation[Tag] = fields.ForeignKeyField(
        "models.Tag", related_name="members", on_delete=fields.RESTRICT
    )
    source = fields.CharField(max_length=8)
    set_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField()

    class Meta:
        table = "member_tag"
        unique_together = (("member", "tag"),)


class Staff(Model):
    """A WeCom staff member and the role they act with."""

    id = fields.BigIntField(primary_key=True)
    userid = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=64, default="")
    role = fields.CharField(max_length=16, default="staff")
    active = fields.BooleanField(default=True)

    class Meta:
        table = "staff"


class Consent(Model):
    """A consent decision per purpose (PIPL), with the text version shown."""

    id = fields.BigIntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="consents", on_delete=fields.RESTRICT
    )
    purpose = fields.CharField(max_length=32)
    granted = fields.BooleanField()
    channel = fields.CharField(max_length=32, default="")
    text_version = fields.CharField(max_length=32, default="")
    at = fields.DatetimeField()

    class Meta:
        table = "consent"


class AuditLog(Model):
    """Every state change from the API, CLI or staff chat: who, what, on what, when."""

    id = fields.BigIntField(primary_key=True)
    actor = fields.CharField(max_length=64)
    action = fields.CharField(max_length=64)
    target = fields.CharField(max_length=128)
    detail: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "audit_log"
