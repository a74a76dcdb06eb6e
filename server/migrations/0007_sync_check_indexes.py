from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_releases')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Observation',
            index=Index(fields=['user_id', 'taxon_id', 'phenophase_id', 'status', 'observed_at']),
        ),
        ops.AddIndex(
            model_name='Observation',
            index=Index(fields=['review_status', 'taxon_id', 'phenophase_id', 'status', 'observed_at']),
        ),
    ]
