from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_members_and_points')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OrderRefund',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('models.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='refunds', on_delete=OnDelete.RESTRICT)),
                ('refund_id', fields.CharField(max_length=128)),
                ('amount_fen', fields.BigIntField()),
                ('points_reversed', fields.BigIntField(default=0)),
                ('growth_reversed', fields.BigIntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'order_refund', 'app': 'models', 'unique_together': (('order', 'refund_id'),), 'pk_attr': 'id', 'table_description': "One refund of an order, keyed by the caller's refund id (idempotent)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Reward',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=32)),
                ('name', fields.CharField(max_length=64)),
                ('description', fields.CharField(default='', max_length=256)),
                ('cost_points', fields.BigIntField()),
                ('stock', fields.BigIntField(null=True)),
                ('per_member_limit', fields.IntField(default=0)),
                ('coupon_value_fen', fields.BigIntField(default=0)),
                ('coupon_discount', fields.IntField(default=0)),
                ('coupon_valid_days', fields.IntField(default=30)),
                ('available_from', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('available_to', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('active', fields.BooleanField(default=True)),
                ('sort_order', fields.IntField(default=0)),
                ('source', fields.CharField(default='config', max_length=8)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'reward', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A reward in the points mall, from the settings or the admin API.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Redemption',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('idempotency_key', fields.CharField(unique=True, max_length=191)),
                ('reward', fields.ForeignKeyField('models.Reward', source_field='reward_id', db_constraint=True, to_field='id', related_name='redemptions', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='redemptions', on_delete=OnDelete.RESTRICT)),
                ('points', fields.BigIntField()),
                ('entry_id', fields.BigIntField()),
                ('channel', fields.CharField(default='', max_length=32)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'redemption', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A member bought a reward with points: the spend entry and the coupon issued.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Coupon',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=16)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('reward', fields.ForeignKeyField('models.Reward', source_field='reward_id', null=True, db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('redemption', fields.ForeignKeyField('models.Redemption', source_field='redemption_id', null=True, db_constraint=True, to_field='id', related_name='coupons', on_delete=OnDelete.RESTRICT)),
                ('name', fields.CharField(max_length=64)),
                ('value_fen', fields.BigIntField(default=0)),
                ('discount', fields.IntField(default=0)),
                ('valid_from', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('valid_to', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('state', fields.CharField(default='issued', db_index=True, max_length=8)),
                ('source', fields.CharField(default='redemption', max_length=16)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('used_order_id', fields.CharField(null=True, db_index=True, max_length=128)),
                ('used_by', fields.CharField(default='', max_length=64)),
                ('voided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'coupon', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A coupon: code from a CSPRNG, a value in fen or a discount, and a validity window.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Order',
            name='fingerprint',
            field=fields.CharField(default='', max_length=64),
        ),
        ops.AddField(
            model_name='Order',
            name='growth',
            field=fields.BigIntField(default=0),
        ),
        ops.AddField(
            model_name='Order',
            name='growth_reversed',
            field=fields.BigIntField(default=0),
        ),
        ops.AddField(
            model_name='Order',
            name='points',
            field=fields.BigIntField(default=0),
        ),
        ops.AddField(
            model_name='Order',
            name='points_reversed',
            field=fields.BigIntField(default=0),
        ),
        ops.AddField(
            model_name='Order',
            name='source',
            field=fields.CharField(default='api', max_length=16),
        ),
        ops.AddField(
            model_name='Order',
            name='store',
            field=fields.CharField(default='', max_length=64),
        ),
    ]
