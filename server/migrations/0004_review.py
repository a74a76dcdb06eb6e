from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_photos')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ReviewQueueItem',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('observation', fields.OneToOneField('models.Observation', source_field='observation_id', db_constraint=True, to_field='id', related_name='queue_item', on_delete=OnDelete.CASCADE)),
                ('project_id', fields.IntField()),
                ('taxon_id', fields.IntField()),
                ('phenophase_id', fields.IntField()),
                ('observer_id', fields.IntField()),
                ('flag_order', fields.SmallIntField(default=0)),
                ('created_seq', fields.BigIntField(default=0)),
                ('expert_only', fields.BooleanField(default=False)),
                ('round', fields.SmallIntField(default=1)),
                ('claimed_by_id', fields.IntField(null=True)),
                ('lease_expires_ms', fields.BigIntField(default=0)),
                ('entered_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'review_queue', 'app': 'models', 'indexes': [Index(fields=['project_id', 'expert_only', 'flag_order', 'created_seq']), Index(fields=['claimed_by_id'])], 'pk_attr': 'id', 'table_description': 'An observation waiting for review, with the lease of whoever claimed it.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='ReviewDecision',
            name='round',
            field=fields.SmallIntField(default=1),
        ),
        ops.AddIndex(
            model_name='ReviewDecision',
            index=Index(fields=['observation_id', 'reviewer_id']),
        ),
    ]
