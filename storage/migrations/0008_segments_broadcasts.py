from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_sop_engine')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Segment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('description', fields.CharField(default='', max_length=255)),
                ('rule', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_by', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'segment', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A saved segment rule (all/any groups of conditions), by name.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Broadcast',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=128)),
                ('segment', fields.ForeignKeyField('models.Segment', source_field='segment_id', null=True, db_constraint=True, to_field='id', related_name='broadcasts', on_delete=OnDelete.RESTRICT)),
                ('rule', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('channel', fields.CharField(max_length=24)),
                ('account', fields.CharField(default='', max_length=64)),
                ('kind', fields.CharField(default='marketing', max_length=10)),
                ('template', fields.CharField(default='', max_length=64)),
                ('content', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('state', fields.CharField(default='draft', db_index=True, max_length=12)),
                ('scheduled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('reach', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_by', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'broadcast', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One broadcast: a segment, a channel, one content, a state.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MassJob',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('broadcast', fields.ForeignKeyField('models.Broadcast', source_field='broadcast_id', db_constraint=True, to_field='id', related_name='mass_jobs', on_delete=OnDelete.RESTRICT)),
                ('account', fields.CharField(max_length=64)),
                ('clientmsgid', fields.CharField(unique=True, max_length=64)),
                ('msg_id', fields.CharField(default='', db_index=True, max_length=64)),
                ('recipients', fields.IntField(default=0)),
                ('status', fields.CharField(default='pending', max_length=16)),
                ('total_count', fields.IntField(default=0)),
                ('filter_count', fields.IntField(default=0)),
                ('sent_count', fields.IntField(default=0)),
                ('error_count', fields.IntField(default=0)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'mass_job', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One OA mass-send call (≤ 10,000 openids) of a broadcast and its reported totals.'},
            bases=['Model'],
        ),
    ]
