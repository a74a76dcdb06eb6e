from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_review')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Photo',
            name='client_changed_device',
            field=fields.CharField(null=True, max_length=64),
        ),
    ]
