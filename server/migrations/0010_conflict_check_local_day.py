from tortoise import migrations
from tortoise.migrations import operations as ops

INDEX = "idx_observation_same_local_day"
# The observer's local date: server/quality/conflicting_status.py LOCAL_DAY_SQL
# repeats these expressions (a query uses the index only with the same one;
# tests/server/quality/test_conflicting_status.py checks the query plan).
LOCAL_DAY_SQL = {
    "sqlite": "date(observed_at, observed_utc_offset_min || ' minutes')",
    "postgres": ("((observed_at AT TIME ZONE 'UTC') + observed_utc_offset_min "
                 "* interval '1 minute')::date"),
}


def _create(dialect: str) -> str:
    return (f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON "observations" '
            f'("user_id", "taxon_id", "phenophase_id", "status", ({LOCAL_DAY_SQL[dialect]}), '
            f'"latitude")')


async def create_index(apps, schema_editor):
    client = schema_editor.client
    await client.execute_script(_create(client.capabilities.dialect))


async def drop_index(apps, schema_editor):
    await schema_editor.client.execute_script(f'DROP INDEX IF EXISTS "{INDEX}"')


class Migration(migrations.Migration):
    dependencies = [('models', '0009_conflict_check_latitude')]

    initial = False

    # The conflicting_status check compares local days: its index holds the
    # observer's local date (an expression of observed_at and its UTC offset)
    # instead of observed_at, so each record of a push is one index seek and
    # a short range of latitudes, not every record of the 72 hours that may
    # be its local day.  The new index is built before the old one goes.
    operations = [
        ops.RunPython(create_index, drop_index),
        ops.RemoveIndex(
            model_name='Observation',
            name=None,
            fields=['user_id', 'taxon_id', 'phenophase_id', 'status', 'observed_at', 'latitude'],
        ),
    ]
