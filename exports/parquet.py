"""Parquet files of a release: zstd, a pinned schema, key-value metadata, and
row groups of ``ROW_GROUP_ROWS`` rows however small the incoming batches are."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

#: Rows per row group: inside the 100k to 1M readers like, small enough that
#: one buffered group stays well inside the export's memory budget.
ROW_GROUP_ROWS = 131_072


class TableWriter:
    """Appends sorted batches to one Parquet file, in row groups of a fixed size."""

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        metadata: dict[str, str],
        row_group_rows: int = ROW_GROUP_ROWS,
    ) -> None:
        self.path = path
        self.schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
        self.row_group_rows = row_group_rows
        self._writer = pq.ParquetWriter(
            path, self.schema, compression="zstd", compression_level=3,
            write_statistics=True, use_dictionary=True,
        )
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, self.schema)
        full = (table.num_rows // self.row_group_rows) * self.row_group_rows
        cut = table.num_rows if final else full
        if cut:
            self._writer.write_table(table.slice(0, cut), row_group_size=self.row_group_rows)
        rest = table.slice(cut)
        self._pending = rest.to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> None:
        self._flush(final=True)
        self._writer.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self._writer.close()
