from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_wecom_customers')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SopRun',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('sop_id', fields.CharField(max_length=64)),
                ('fire_time', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharField(default='running', max_length=12)),
                ('trigger', fields.CharField(default='cron', max_length=12)),
                ('runner', fields.CharField(default='', max_length=96)),
                ('counts', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('note', fields.CharField(default='', max_length=255)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sop_run', 'app': 'models', 'unique_together': (('sop_id', 'fire_time'),), 'pk_attr': 'id', 'table_description': 'One fire time of one SOP: unique (sop id, fire time), so a tick runs once.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Touchpoint',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('sop_id', fields.CharField(max_length=64)),
                ('member_id', fields.BigIntField()),
                ('occurrence', fields.CharField(max_length=96)),
                ('run_id', fields.BigIntField(null=True, db_index=True)),
                ('status', fields.CharField(default='pending', max_length=12)),
                ('due_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('attempts', fields.IntField(default=0)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('granted', fields.BooleanField(default=False)),
                ('outcome', fields.CharField(default='', max_length=255)),
                ('outbox_id', fields.BigIntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('done_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'touchpoint', 'app': 'models', 'unique_together': (('sop_id', 'member_id', 'occurrence'),), 'indexes': [Index(fields=['status', 'due_at']), Index(fields=['member_id', 'sop_id'])], 'pk_attr': 'id', 'table_description': 'One SOP touch of one member: unique (sop id, member, occurrence key).'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='OutboxMessage',
            name='external_ref',
            field=fields.CharField(default='', db_index=True, max_length=128),
        ),
        ops.AddField(
            model_name='OutboxMessage',
            name='group_key',
            field=fields.CharField(default='', db_index=True, max_length=128),
        ),
        ops.AddField(
            model_name='OutboxMessage',
            name='kind',
            field=fields.CharField(default='service', max_length=10),
        ),
        ops.AddField(
            model_name='OutboxMessage',
            name='staff_userid',
            field=fields.CharField(default='', max_length=64),
        ),
        ops.AddIndex(
            model_name='OutboxMessage',
            index=Index(fields=['member_id', 'kind', 'created_at']),
        ),
    ]
