from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_privacy')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ContactWay',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('config_id', fields.CharField(unique=True, max_length=128)),
                ('state', fields.CharField(db_index=True, max_length=30)),
                ('staff', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('qr_code', fields.CharField(default='', max_length=512)),
                ('created_by', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'contact_way', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A 联系我 QR code created by ``wecom contact-way create``: its State and staff.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CustomerGroup',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chat_id', fields.CharField(unique=True, max_length=128)),
                ('name', fields.CharField(default='', max_length=128)),
                ('owner_userid', fields.CharField(default='', db_index=True, max_length=64)),
                ('notice', fields.TextField(default='', unique=False)),
                ('status', fields.CharField(default='active', max_length=12)),
                ('member_version', fields.CharField(default='', max_length=64)),
                ('group_created_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('dismissed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'customer_group', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A customer group chat (客户群): owner, name, notice and roster version.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CustomerTransfer',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('handover_userid', fields.CharField(db_index=True, max_length=64)),
                ('takeover_userid', fields.CharField(max_length=64)),
                ('external_userid', fields.CharField(max_length=128)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', null=True, db_constraint=True, to_field='id', related_name='transfers', on_delete=OnDelete.RESTRICT)),
                ('resigned', fields.BooleanField(default=False)),
                ('status', fields.CharField(default='waiting', db_index=True, max_length=12)),
                ('errcode', fields.IntField(default=0)),
                ('reason', fields.CharField(default='', max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'customer_transfer', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One customer handed from one staff member to another (在职/离职继承), polled until'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='GroupMember',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('group', fields.ForeignKeyField('models.CustomerGroup', source_field='group_id', db_constraint=True, to_field='id', related_name='roster', on_delete=OnDelete.RESTRICT)),
                ('userid', fields.CharField(max_length=128)),
                ('type', fields.SmallIntField(default=2)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', null=True, db_constraint=True, to_field='id', related_name='group_memberships', on_delete=OnDelete.RESTRICT)),
                ('group_nickname', fields.CharField(default='', max_length=64)),
                ('join_scene', fields.SmallIntField(default=0)),
                ('join_time', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('quit_scene', fields.SmallIntField(null=True)),
                ('left_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('invitor', fields.CharField(default='', max_length=64)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'group_member', 'app': 'models', 'unique_together': (('group', 'userid'),), 'pk_attr': 'id', 'table_description': 'Someone in a customer group: staff (type 1) or an external contact (type 2), linked'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StaffCustomer',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('corp', fields.CharField(max_length=64)),
                ('staff_userid', fields.CharField(db_index=True, max_length=64)),
                ('external_userid', fields.CharField(db_index=True, max_length=128)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='staff_relations', on_delete=OnDelete.RESTRICT)),
                ('remark', fields.CharField(default='', max_length=128)),
                ('description', fields.CharField(default='', max_length=255)),
                ('add_way', fields.IntField(default=0)),
                ('state', fields.CharField(default='', max_length=64)),
                ('status', fields.CharField(default='active', db_index=True, max_length=8)),
                ('ended_by', fields.CharField(default='', max_length=8)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('welcome', fields.CharField(default='', max_length=12)),
                ('transfer_status', fields.CharField(default='', max_length=16)),
                ('transfer_note', fields.CharField(default='', max_length=255)),
                ('added_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'staff_customer', 'app': 'models', 'unique_together': (('corp', 'staff_userid', 'external_userid'),), 'pk_attr': 'id', 'table_description': "A staff member's relation with an external contact (one per corp, staff, customer)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CustomerTag',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('relation', fields.ForeignKeyField('models.StaffCustomer', source_field='relation_id', db_constraint=True, to_field='id', related_name='tags', on_delete=OnDelete.RESTRICT)),
                ('tag', fields.ForeignKeyField('models.Tag', source_field='tag_id', db_constraint=True, to_field='id', related_name='relations', on_delete=OnDelete.RESTRICT)),
                ('source', fields.CharField(default='sync', max_length=8)),
                ('set_by', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'customer_tag', 'app': 'models', 'unique_together': (('relation', 'tag'),), 'pk_attr': 'id', 'table_description': 'A corp tag on one staff–customer relation, as WeCom holds it (mark_tag).'},
            bases=['Model'],
        ),
    ]
