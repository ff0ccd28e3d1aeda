from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OutboxMessage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('idempotency_key', fields.CharField(unique=True, max_length=255)),
                ('channel', fields.CharField(max_length=24)),
                ('account', fields.CharField(max_length=64)),
                ('recipient', fields.CharField(db_index=True, max_length=128)),
                ('member_id', fields.BigIntField(null=True, db_index=True)),
                ('source', fields.CharField(max_length=32)),
                ('payload', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharField(default='pending', max_length=16)),
                ('reason', fields.CharField(default='', max_length=255)),
                ('attempts', fields.IntField(default=0)),
                ('due_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claimed_by', fields.CharField(default='', max_length=64)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'outbox_message', 'app': 'models', 'indexes': [Index(fields=['status', 'due_at'])], 'pk_attr': 'id', 'table_description': 'One outbound message to one recipient: the unit of work of the outbound engine.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PlatformToken',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=128)),
                ('token', fields.CharField(default='', max_length=1024)),
                ('expires_at', fields.FloatField(default=0)),
                ('version', fields.IntField(default=0)),
                ('refresh_until', fields.FloatField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'platform_token', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A WeChat access token shared by every process when there is no Redis.'},
            bases=['Model'],
        ),
    ]
