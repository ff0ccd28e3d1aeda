from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0009_member_link_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BroadcastConfirmation',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('broadcast', fields.ForeignKeyField('models.Broadcast', source_field='broadcast_id', db_constraint=True, to_field='id', related_name='confirmations', on_delete=OnDelete.RESTRICT)),
                ('staff_userid', fields.CharField(max_length=64)),
                ('code_hash', fields.CharField(max_length=64)),
                ('status', fields.CharField(default='pending', db_index=True, max_length=12)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('progress', fields.CharField(default='', max_length=12)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'broadcast_confirmation', 'app': 'models', 'indexes': [Index(fields=['staff_userid', 'code_hash'])], 'pk_attr': 'id', 'table_description': 'The one-time code that starts a broadcast drafted in the WeCom agent chat (群发).'},
            bases=['Model'],
        ),
    ]
