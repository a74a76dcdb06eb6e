from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from server.models.jobs import JobState
from server.models.uploads import UploadStatus
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_login_failures')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Job',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=64)),
                ('payload', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('state', fields.CharEnumField(default=JobState.QUEUED, description='QUEUED: queued\nRUNNING: running\nDONE: done\nFAILED: failed', enum_type=JobState, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('max_attempts', fields.IntField(default=5)),
                ('run_after', fields.BigIntField(default=0)),
                ('locked_until', fields.BigIntField(default=0)),
                ('locked_by', fields.CharField(null=True, max_length=64)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'jobs', 'app': 'models', 'indexes': [Index(fields=['state', 'run_after'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Upload',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('photo', fields.ForeignKeyField('models.Photo', source_field='photo_id', db_constraint=True, to_field='id', related_name='uploads', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='uploads', on_delete=OnDelete.CASCADE)),
                ('length', fields.BigIntField()),
                ('offset', fields.BigIntField(default=0)),
                ('metadata_header', fields.TextField(default='', unique=False)),
                ('metadata', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('declared_sha256', fields.CharField(null=True, max_length=64)),
                ('content_type', fields.CharField(null=True, max_length=64)),
                ('state', fields.CharEnumField(default=UploadStatus.RECEIVING, description='RECEIVING: receiving\nCOMPLETE: complete\nPROCESSED: processed\nFAILED: failed\nTERMINATED: terminated\nEXPIRED: expired', enum_type=UploadStatus, max_length=16)),
                ('storage_key', fields.CharField(max_length=255)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('locked_until', fields.BigIntField(default=0)),
                ('lock_token', fields.CharField(null=True, max_length=32)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'uploads', 'app': 'models', 'indexes': [Index(fields=['state', 'expires_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Photo',
            name='derivative_sizes',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='Photo',
            name='exif_latitude',
            field=fields.FloatField(null=True),
        ),
        ops.AddField(
            model_name='Photo',
            name='exif_longitude',
            field=fields.FloatField(null=True),
        ),
        ops.AddField(
            model_name='Photo',
            name='exif_taken_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Photo',
            name='failure_code',
            field=fields.CharField(null=True, max_length=48),
        ),
        ops.AddField(
            model_name='Photo',
            name='phash_band0',
            field=fields.IntField(null=True, db_index=True),
        ),
        ops.AddField(
            model_name='Photo',
            name='phash_band1',
            field=fields.IntField(null=True, db_index=True),
        ),
        ops.AddField(
            model_name='Photo',
            name='phash_band2',
            field=fields.IntField(null=True, db_index=True),
        ),
        ops.AddField(
            model_name='Photo',
            name='phash_band3',
            field=fields.IntField(null=True, db_index=True),
        ),
    ]
