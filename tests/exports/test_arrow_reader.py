"""The SQLite reader child process: rows come back as Arrow batches, an
empty result as none, and a failed query as an error with SQLite's message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from exports import arrow_reader


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "small.sqlite3"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE t (id TEXT, n INTEGER, x REAL, at TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                    [(f"r{i}", i, i / 4, f"2024-01-0{1 + i % 9} 10:00:00+00:00")
                     for i in range(40_000)])
    con.commit()
    con.close()
    return path


def test_rows_come_back_as_arrow_batches(database: Path) -> None:
    batches = list(arrow_reader.sqlite_batches(str(database), "SELECT * FROM t ORDER BY n"))
    assert len(batches) > 1  # streamed, BATCH_ROWS at a time
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 40_000
    assert table.schema.types == [pa.string(), pa.int64(), pa.float64(), pa.string()]
    assert table.slice(39_999).to_pylist() == [
        {"id": "r39999", "n": 39_999, "x": 39_999 / 4, "at": "2024-01-04 10:00:00+00:00"}
    ]


def test_an_empty_result_is_no_batch(database: Path) -> None:
    assert list(arrow_reader.sqlite_batches(str(database), "SELECT * FROM t WHERE n < 0")) == []


def test_a_failed_query_raises_with_sqlites_message(database: Path) -> None:
    with pytest.raises(RuntimeError, match="no such column"):
        list(arrow_reader.sqlite_batches(str(database), "SELECT nope FROM t"))
