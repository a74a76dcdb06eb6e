"""Raw SQL with the right placeholders for the connection's dialect."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient


class Sql:
    """Collects parameter values and writes ``?`` (SQLite) or ``$n`` (PostgreSQL)."""

    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.postgres = conn.capabilities.dialect == "postgres"
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}" if self.postgres else "?"

    def many(self, values: list[Any]) -> str:
        return ", ".join(self(v) for v in values)
