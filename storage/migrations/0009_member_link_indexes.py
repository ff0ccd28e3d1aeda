from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0008_segments_broadcasts')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Identity',
            index=Index(fields=['member_id']),
        ),
        ops.AddIndex(
            model_name='StaffCustomer',
            index=Index(fields=['member_id']),
        ),
    ]
