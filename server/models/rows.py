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


def _values(model: type[Model], columns: Sequence[str],
            rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    encoders = _encoders(model, columns)
    if not any(encoders):
        return [[row[c] for c in columns] for row in rows]
    return [
        [row[c] if enc is None else enc.to_db_value(row[c], model)
         for c, enc in zip(columns, encoders, strict=True)]
        for row in rows
    ]


async def insert_many(conn: BaseDBAsyncClient, model: type[Model],
                      rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT every row (all with the keys of the first) in one executemany."""
    if not rows:
        return
    columns = list(rows[0])
    sql = (f'INSERT INTO "{model._meta.db_table}" (' + ", ".join(f'"{c}"' for c in columns)
           + f") VALUES ({placeholders(conn, len(columns))})")
    await conn.execute_many(sql, _values(model, columns, rows))


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
    await conn.execute_many(sql, _values(model, [*columns, key], rows))


async def delete_in(conn: BaseDBAsyncClient, model: type[Model], column: str,
                    values: Sequence[Any]) -> None:
    """DELETE the rows whose ``column`` is one of ``values`` (one statement)."""
    if not values:
        return
    sql = (f'DELETE FROM "{model._meta.db_table}" WHERE "{column}" IN ('
           + placeholders(conn, len(values)) + ")")
    await conn.execute_query(sql, list(values))


async def select_in(conn: BaseDBAsyncClient, columns: str, table: str, column: str,
                    values: Sequence[Any], where: str = "") -> list[dict[str, Any]]:
    """Plain rows of ``table`` whose ``column`` is one of ``values``."""
    if not values:
        return []
    sql = (f"SELECT {columns} FROM {table} WHERE {column} IN ("
           + placeholders(conn, len(values)) + ")" + (f" AND {where}" if where else ""))
    return await conn.execute_query_dict(sql, list(values))
