from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='InboundEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('dedupe_key', fields.CharField(unique=True, max_length=255)),
                ('platform', fields.CharField(max_length=8)),
                ('account', fields.CharField(max_length=64)),
                ('kind', fields.CharField(max_length=96)),
                ('sender', fields.CharField(db_index=True, max_length=128)),
                ('member_id', fields.BigIntField(null=True)),
                ('outcome', fields.CharField(max_length=16)),
                ('handler_ms', fields.IntField(default=0)),
                ('payload', fields.TextField(unique=False)),
                ('received_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'inbound_event', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One processed callback: its dedupe key, what it was and how it ended.'},
            bases=['Model'],
        ),
    ]
