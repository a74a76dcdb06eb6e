"""The pinned Arrow schemas of a release, built from the contract in
``schemas.dataset``.

A reader's schema must equal these exactly (``tests/exports/test_schema.py``
pins them), so a type change is as visible as a renamed column.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.dataset import TABLES, Column

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "smallint": pa.int16(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "list": pa.list_(pa.string()),
}


def arrow_field(column: Column) -> pa.Field:
    metadata = {"description": column.description}
    if column.term:
        metadata["term"] = column.term
    return pa.field(column.name, ARROW_TYPES[column.type], column.nullable, metadata)


def arrow_schema(table: str) -> pa.Schema:
    return pa.schema([arrow_field(c) for c in TABLES[table]])


OBSERVATIONS = arrow_schema("observations")
MEDIA = arrow_schema("media")
PHENOMETRICS = arrow_schema("phenometrics")

