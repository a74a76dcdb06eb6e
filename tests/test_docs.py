"""Docs kept honest: every API route is documented in docs/api.md."""

from __future__ import annotations

from pathlib import Path

from server.routes import ENDPOINTS

ROOT = Path(__file__).resolve().parents[1]


def test_every_endpoint_is_in_the_api_docs() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    for ep in ENDPOINTS:
        assert f"| {ep.method} | `{ep.path}` |" in doc, f"{ep.method} {ep.path} not in docs/api.md"


def test_readme_gives_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme


def test_sync_protocol_doc_covers_every_column_and_rejection_code() -> None:
    from schemas.sync import TABLES, Rejection

    doc = (ROOT / "docs" / "sync-protocol.md").read_text()
    for table, columns in TABLES.items():
        assert f"### {table}" in doc or f"**{table}**" in doc, table
        for column in columns:
            assert f"`{column.name}`" in doc, f"{table}.{column.name} is not documented"
    for code in Rejection:
        assert f"`{code}`" in doc, f"rejection code {code} is not documented"
def test_every_release_table_is_in_the_datasets_docs() -> None:
    from schemas.dataset import TABLES

    doc = (ROOT / "docs" / "datasets.md").read_text()
    for table in TABLES:
        assert table in doc, f"table {table} not in docs/datasets.md"
    assert "phenosync publish" in (ROOT / "README.md").read_text()
