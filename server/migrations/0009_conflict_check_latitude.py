from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0008_superseded_pushes')]

    initial = False

    # The conflicting_status index gains latitude: its query reads the box
    # around a record from the index.  The new index is built before the old
    # one goes, so the check is never without one.
    operations = [
        ops.AddIndex(
            model_name='Observation',
            index=Index(fields=['user_id', 'taxon_id', 'phenophase_id', 'status', 'observed_at', 'latitude']),
        ),
        ops.RemoveIndex(
            model_name='Observation',
            name=None,
            fields=['user_id', 'taxon_id', 'phenophase_id', 'status', 'observed_at'],
        ),
    ]
