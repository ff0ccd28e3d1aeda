from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_rewards_coupons_orders')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MergeRequest',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='merge_requests', on_delete=OnDelete.RESTRICT)),
                ('holder', fields.ForeignKeyField('models.Member', source_field='holder_id', db_constraint=True, to_field='id', related_name='merge_requests_held', on_delete=OnDelete.RESTRICT)),
                ('mobile_hash', fields.CharField(max_length=64)),
                ('pending_key', fields.CharField(null=True, unique=True, max_length=64)),
                ('status', fields.CharField(default='pending', db_index=True, max_length=10)),
                ('reason', fields.CharField(default='', max_length=255)),
                ('decided_by', fields.CharField(default='', max_length=64)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('merge_id', fields.BigIntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'merge_request', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A verified number held by another member with a chat identity: staff decide.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PhoneVerification',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='phone_verifications', on_delete=OnDelete.RESTRICT)),
                ('mobile_cipher', fields.TextField(unique=False)),
                ('mobile_hash', fields.CharField(db_index=True, max_length=64)),
                ('code_hash', fields.CharField(max_length=64)),
                ('tries', fields.IntField(default=0)),
                ('status', fields.CharField(default='pending', max_length=12)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('verified_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'phone_verification', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A one-time code sent to a number a member wants to bind.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Member',
            name='deleted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Member',
            name='marketing_opt_out',
            field=fields.BooleanField(default=False, db_index=True),
        ),
        ops.AddField(
            model_name='Member',
            name='name',
            field=fields.CharField(default='', max_length=64),
        ),
    ]
