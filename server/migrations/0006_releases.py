from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0005_photo_device')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Release',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('version', fields.CharField(unique=True, max_length=32)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('path', fields.CharField(max_length=255)),
                ('schema_version', fields.CharField(max_length=32)),
                ('observation_count', fields.BigIntField(default=0)),
                ('media_count', fields.BigIntField(default=0)),
                ('retracted_count', fields.BigIntField(default=0)),
                ('years', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('files', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('sha256', fields.CharField(max_length=64)),
                ('citation', fields.TextField(default='', unique=False)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='releases', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'releases', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='Observation',
            index=Index(fields=['observed_at', 'id']),
        ),
    ]
