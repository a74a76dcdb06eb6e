from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_sync_check_indexes')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Observation',
            name='client_changed_pulled_at',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='Observation',
            name='client_changed_push',
            field=fields.BigIntField(null=True),
        ),
    ]
