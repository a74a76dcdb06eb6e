"""Read a query's rows straight into Arrow record batches with ADBC.

The export reads every published observation once; ADBC's drivers build Arrow
columns in C (SQLite's step loop, PostgreSQL's binary COPY), so no Python
object is made per row or per value.

SQLite is read in a child process, never in the caller's.  ADBC's SQLite
driver bundles its own copy of SQLite, which knows nothing of the server's
connection to the same file: when it closes the file, POSIX ``fcntl``
semantics drop *every* lock the process holds on it, the server's shared lock
on the WAL index included.  Another process (the CLI) then believes it is
alone, rebuilds the WAL index and can lose sight of the server's commits.  A
child process has locks of its own; it opens the file read-only and streams
Arrow IPC back over a pipe (``python -m exports.arrow_reader``).

PostgreSQL is read in the caller's process: the driver's connection is its
own socket, and one ``COPY ... TO STDOUT (FORMAT binary)`` statement reads one
snapshot.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Generator, Iterator
from typing import Any

import pyarrow as pa

#: Rows per record batch from the driver.
BATCH_ROWS = 16_384


def _postgres_uri(url: str) -> str:
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://"):]
    return url


def _query(database: Any, sql: str, options: dict[str, str]) -> Iterator[pa.RecordBatch]:
    """``sql``'s rows on an ADBC database handle, then the handles closed.

    ADBC's low-level API, not its DB-API module: that one imports pandas and
    pyarrow.dataset (about 65 MB more of RSS)."""
    import adbc_driver_manager as adbc

    try:
        with adbc.AdbcConnection(database) as conn, adbc.AdbcStatement(conn) as statement:
            statement.set_options(**options)
            statement.set_sql_query(sql)
            stream, _ = statement.execute_query()
            reader = pa.RecordBatchReader._import_from_c(stream.address)
            try:
                yield from reader
            finally:
                reader.close()
    finally:
        database.close()


def postgres_batches(url: str, sql: str) -> Generator[pa.RecordBatch, None, None]:
    """The rows of ``sql`` on the PostgreSQL server at ``url``."""
    import adbc_driver_postgresql

    database = adbc_driver_postgresql.connect(_postgres_uri(url))
    options = {"adbc.postgresql.batch_size_hint_bytes": str(16 * 1024 * 1024)}
    for batch in _query(database, sql, options):
        if batch.num_rows:
            yield batch


def sqlite_batches(path: str, sql: str) -> Generator[pa.RecordBatch, None, None]:
    """The rows of ``sql`` on the SQLite file at ``path``, read by a child process."""
    child = subprocess.Popen(
        [sys.executable, "-m", "exports.arrow_reader", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    try:
        child.stdin.write(sql.encode())
        child.stdin.close()
        try:
            reader = pa.ipc.open_stream(child.stdout)
        except pa.ArrowInvalid:
            reader = None  # no rows, or the child failed before writing a schema
        if reader is not None:
            for batch in reader:
                if batch.num_rows:
                    yield batch
        error = child.stderr.read().decode(errors="replace")
        if child.wait() != 0:
            raise RuntimeError(f"the SQLite reader failed: {error.strip()}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()


def _sqlite_child(path: str) -> None:
    """Run ``sql`` (standard input) on ``path`` read-only, Arrow IPC to standard output."""
    import adbc_driver_sqlite

    sql = sys.stdin.read()
    database = adbc_driver_sqlite.connect(f"file:{path}?mode=ro")
    batches = _query(database, sql, {"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
    first = next(batches, None)
    if first is None:
        return  # no rows: an empty output, which the parent reads as none
    with pa.ipc.new_stream(sys.stdout.buffer, first.schema) as out:
        out.write_batch(first)
        for batch in batches:
            out.write_batch(batch)


if __name__ == "__main__":
    _sqlite_child(sys.argv[1])
