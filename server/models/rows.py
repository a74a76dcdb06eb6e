"""Plain rows: many-row writes in one statement, values as drivers return them.

The sync push writes hundreds of rows per batch; creating and saving model
instances one by one costs most of its time (bench/sync_bench.py).  These
helpers write a batch with one ``executemany`` on the caller's connection.
Values go to the driver as they are (timestamps timezone-aware, in UTC, as
the ORM passes them); JSON columns are encoded by their field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter, methodcaller
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields.data import JSONField
from tortoise.models import Model


def placeholder(conn: BaseDBAsyncClient, position: int) -> str:
    """The ``position``-th (1-based) parameter: ``$n`` on PostgreSQL, ``?`` on SQLite."""
    return f"${position}" if conn.capabilities.dialect == "postgres" else "?"


def placeholders(conn: BaseDBAsyncClient, count: int, start: int = 1) -> str:
    return ", ".join(placeholder(conn, i) for i in range(start, start + count))


def as_datetime(value: Any) -> datetime | None:
    """A timestamp as the driver returns it (SQLite: text, PostgreSQL: datetime)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _encoders(model: type[Model], columns: Sequence[str]) -> list[Any]:
    fields = model._meta.fields_map
    db_fields = {f.source_field or name: f for name, f in fields.items()}
    out = []
    for column in columns:
        field = db_fields.get(column) or fields.get(column)
        out.append(field if isinstance(field, JSONField) else None)
    return out


def _json_column(model: type[Model], field: JSONField, values: Sequence[Any]) -> list[Any]:
    if field.validators:
        return [field.to_db_value(v, model) for v in values]
    # ``to_db_value`` without its checks for values it would pass to the encoder.
    return [field.encoder(v) if v is not None and not isinstance(v, (str, bytes))
            else field.to_db_value(v, model) for v in values]


_ISO_SPACE = methodcaller("isoformat", " ")


def _sqlite_datetimes(values: Sequence[Any]) -> list[Any]:
    """Timestamps as the SQLite backend stores them (its adapter writes
    ``isoformat(" ")``), formatted here: a callback from C per value costs
    more.  A column of one shared object (a batch's ``now``) is formatted
    once (the same object: equal instants in other zones format otherwise);
    a column of timestamps only, in one pass at C speed."""
    first = values[0]
    if type(first) is datetime and all(v is first for v in values):
        return [first.isoformat(" ")] * len(values)
    if set(map(type, values)) == {datetime}:
        return list(map(_ISO_SPACE, values))
    return [v.isoformat(" ") if type(v) is datetime else v for v in values]


def _values(conn: BaseDBAsyncClient, model: type[Model], columns: Sequence[str],
            rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The parameter rows (tuples: both drivers take any sequence), converted
    column by column.  Rows are cut into columns and back by ``itemgetter``
    and ``zip`` (C loops: a push converts 500 rows of 30 columns)."""
    sqlite = conn.capabilities.dialect == "sqlite"
    if len(columns) == 1:
        table = [[row[columns[0]] for row in rows]]
    else:
        table = [list(c) for c in zip(*map(itemgetter(*columns), rows), strict=True)]
    for i, enc in enumerate(_encoders(model, columns)):
        values = table[i]
        if enc is not None:
            table[i] = _json_column(model, enc, values)
        elif sqlite and datetime in set(map(type, values)):
            table[i] = _sqlite_datetimes(values)
    return list(zip(*table, strict=True))


def _insert_sql(conn: BaseDBAsyncClient, model: type[Model], columns: Sequence[str]) -> str:
    return (f'INSERT INTO "{model._meta.db_table}" (' + ", ".join(f'"{c}"' for c in columns)
            + f") VALUES ({placeholders(conn, len(columns))})")


async def insert_many(conn: BaseDBAsyncClient, model: type[Model],
                      rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT every row (all with the keys of the first) in one executemany."""
    if not rows:
        return
    columns = list(rows[0])
    await conn.execute_many(_insert_sql(conn, model, columns), _values(conn, model, columns, rows))


def insert_statement(conn: BaseDBAsyncClient, model: type[Model],
                     row: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The INSERT of one row, as SQL and values (a step of ``database.run_steps``)."""
    columns = list(row)
    return _insert_sql(conn, model, columns), list(_values(conn, model, columns, [row])[0])


async def update_many(conn: BaseDBAsyncClient, model: type[Model], key: str,
                      rows: Sequence[Mapping[str, Any]], *, extra: str = "") -> None:
    """UPDATE each row by ``key`` (all rows with the keys of the first) in one
    executemany; ``extra`` adds SQL assignments, e.g. ``"n = n + 1"``."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != key]
    sets = [f'"{c}" = {placeholder(conn, i)}' for i, c in enumerate(columns, 1)]
    if extra:
        sets.append(extra)
    sql = (f'UPDATE "{model._meta.db_table}" SET ' + ", ".join(sets)
           + f' WHERE "{key}" = {placeholder(conn, len(columns) + 1)}')
    await conn.execute_many(sql, _values(conn, model, [*columns, key], rows))


async def delete_in(conn: BaseDBAsyncClient, model: type[Model], column: str,
                    values: Sequence[Any]) -> None:
    """DELETE the rows whose ``column`` is one of ``values`` (one statement)."""
    if not values:
        return
    sql = (f'DELETE FROM "{model._meta.db_table}" WHERE "{column}" IN ('
           + placeholders(conn, len(values)) + ")")
    await conn.execute_query(sql, list(values))


async def select_in(conn: BaseDBAsyncClient, columns: str, table: str, column: str,
                    values: Sequence[Any], where: str = "", *,
                    extra: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Plain rows of ``table`` whose ``column`` is one of ``values``; ``where``
    may add a condition whose parameters (``extra``) follow the values."""
    if not values:
        return []
    sql = (f"SELECT {columns} FROM {table} WHERE {column} IN ("
           + placeholders(conn, len(values)) + ")" + (f" AND {where}" if where else ""))
    return await conn.execute_query_dict(sql, [*values, *extra])
