"""WeCom customer contact (客户联系): staff–customer relations, their corp tags, customer
groups and their rosters, contact ways and customer transfers."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from storage.models.members import Member, Tag


class StaffCustomer(Model):
    """A staff member's relation with an external contact (one per corp, staff, customer).

    status: ``active``, ``pending`` (a half add, 待验证), or ``ended`` (``ended_by``
    staff: the staff member deleted the customer; customer: the customer deleted the staff
    member; transfer: handed over). ``welcome``: sent, by_console (no WelcomeCode: the
    admin console sends it), failed or '' (none due).
    """

    id = fields.BigIntField(primary_key=True)
    corp = fields.CharField(max_length=64)
    staff_userid = fields.CharField(max_length=64, db_index=True)
    external_userid = fields.CharField(max_length=128, db_index=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="staff_relations", on_delete=fields.RESTRICT
    )
    remark = fields.CharField(max_length=128, default="")
    description = fields.CharField(max_length=255, default="")
    add_way = fields.IntField(default=0)
    state = fields.CharField(max_length=64, default="")
    status = fields.CharField(max_length=8, default="active", db_index=True)
    ended_by = fields.CharField(max_length=8, default="")
    ended_at = fields.DatetimeField(null=True)
    welcome = fields.CharField(max_length=12, default="")
    transfer_status = fields.CharField(max_length=16, default="")
    transfer_note = fields.CharField(max_length=255, default="")
    added_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "staff_customer"
        unique_together = (("corp", "staff_userid", "external_userid"),)
        indexes = (("member_id",),)  # a member's staff (the WeCom channel, reach, merges)


class CustomerTag(Model):
    """A corp tag on one staff–customer relation, as WeCom holds it (mark_tag)."""

    id = fields.BigIntField(primary_key=True)
    relation: fields.ForeignKeyRelation[StaffCustomer] = fields.ForeignKeyField(
        "models.StaffCustomer", related_name="tags", on_delete=fields.RESTRICT
    )
    tag: fields.ForeignKeyRelation[Tag] = fields.ForeignKeyField(
        "models.Tag", related_name="relations", on_delete=fields.RESTRICT
    )
    source = fields.CharField(max_length=8, default="sync")
    set_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField()

    class Meta:
        table = "customer_tag"
        unique_together = (("relation", "tag"),)


class CustomerGroup(Model):
    """A customer group chat (客户群): owner, name, notice and roster version."""

    id = fields.BigIntField(primary_key=True)
    chat_id = fields.CharField(max_length=128, unique=True)
    name = fields.CharField(max_length=128, default="")
    owner_userid = fields.CharField(max_length=64, default="", db_index=True)
    notice = fields.TextField(default="")
    status = fields.CharField(max_length=12, default="active")
    member_version = fields.CharField(max_length=64, default="")
    group_created_at = fields.DatetimeField(null=True)
    dismissed_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField()

    class Meta:
        table = "customer_group"


class GroupMember(Model):
    """Someone in a customer group: staff (type 1) or an external contact (type 2), linked
    to a member where their external user id is known; ``left_at`` once they leave."""

    id = fields.BigIntField(primary_key=True)
    group: fields.ForeignKeyRelation[CustomerGroup] = fields.ForeignKeyField(
        "models.CustomerGroup", related_name="roster", on_delete=fields.RESTRICT
    )
    userid = fields.CharField(max_length=128)
    type = fields.SmallIntField(default=2)
    member: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="group_memberships", null=True, on_delete=fields.RESTRICT
    )
    group_nickname = fields.CharField(max_length=64, default="")
    join_scene = fields.SmallIntField(default=0)
    join_time = fields.DatetimeField(null=True)
    quit_scene = fields.SmallIntField(null=True)
    left_at = fields.DatetimeField(null=True)
    invitor = fields.CharField(max_length=64, default="")
    updated_at = fields.DatetimeField()

    class Meta:
        table = "group_member"
        unique_together = (("group", "userid"),)


class ContactWay(Model):
    """A 联系我 QR code created by ``wecom contact-way create``: its State and staff."""

    id = fields.BigIntField(primary_key=True)
    config_id = fields.CharField(max_length=128, unique=True)
    state = fields.CharField(max_length=30, db_index=True)
    staff: fields.Field[list[str]] = fields.JSONField(default=list)
    qr_code = fields.CharField(max_length=512, default="")
    created_by = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField()

    class Meta:
        table = "contact_way"


class CustomerTransfer(Model):
    """One customer handed from one staff member to another (在职/离职继承), polled until
    WeCom reports the result (status: waiting, success, failed with the reason)."""

    id = fields.BigIntField(primary_key=True)
    handover_userid = fields.CharField(max_length=64, db_index=True)
    takeover_userid = fields.CharField(max_length=64)
    external_userid = fields.CharField(max_length=128)
    member: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="transfers", null=True, on_delete=fields.RESTRICT
    )
    resigned = fields.BooleanField(default=False)
    status = fields.CharField(max_length=12, default="waiting", db_index=True)
    errcode = fields.IntField(default=0)
    reason = fields.CharField(max_length=255, default="")
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "customer_transfer"
