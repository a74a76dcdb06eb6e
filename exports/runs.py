"""An external merge sort per year, in bounded memory.

The source reads observations in storage order (the cheapest read there is);
the release wants each year sorted by instant, scientificName and
occurrenceID.  Normalized batches are held in memory until ``budget_rows``
rows wait; then they are sorted by year and instant, and each year's share
is spilled as one *run* (an Arrow IPC file of small batches).  ``merged(year)`` reads a
year's runs a small batch at a time and yields the year's rows in order: at
each step, the rows before the smallest "last instant" of the runs' loaded
batches are complete (no run can hold an earlier one further on), so they
are sorted together by instant, scientificName and occurrenceID and yielded
(every row of an instant is in the same step).  Memory is the budget while
reading and ``MERGE_ROWS`` shared by the runs while merging, however many
rows there are.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exports.observations import NORMALIZED, SORT_KEYS, UTC_US

#: Rows held in memory (all years together) before they are spilled.
BUDGET_ROWS = 200_000
#: Rows per batch of a run file (the unit merging reads).
RUN_BATCH_ROWS = 1_024
#: Rows merging keeps loaded, all runs of a year together: each run loads
#: ``MERGE_ROWS / runs`` rows at a time, so memory does not grow with the
#: number of runs (which grows with the rows).
MERGE_ROWS = 65_536


class YearRuns:
    def __init__(self, workdir: Path, budget_rows: int = BUDGET_ROWS,
                 run_batch_rows: int = RUN_BATCH_ROWS) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.budget_rows = budget_rows
        self.run_batch_rows = run_batch_rows
        self._waiting: list[pa.RecordBatch] = []
        self._waiting_rows = 0
        self._runs: dict[int, list[Path]] = {}
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Normalized rows of any years (``exports.observations.normalized``)."""
        if not batch.num_rows:
            return
        self._waiting.append(batch)
        self._waiting_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._waiting_rows >= self.budget_rows:
            self.spill()

    def spill(self) -> None:
        """Sort the waiting rows by year, then in published order, and write
        each year's share as one run."""
        if not self._waiting:
            return
        table = pa.Table.from_batches(self._waiting, NORMALIZED)
        self._waiting = []
        self._waiting_rows = 0
        # By instant only: merging sorts each step's rows by every key, and
        # all rows of one instant are merged in one step.
        table = table.take(pc.sort_indices(table, [("_year", "ascending"), SORT_KEYS[0]]))
        years = table["_year"].to_numpy()
        starts = np.flatnonzero(np.r_[True, years[1:] != years[:-1]])
        ends = np.r_[starts[1:], len(years)]
        for start, end in zip(starts, ends, strict=True):
            year = int(years[start])
            runs = self._runs.setdefault(year, [])
            path = self.workdir / f"{year}-{len(runs):05d}.arrow"
            with pa.OSFile(str(path), "wb") as sink, \
                    pa.ipc.new_file(sink, NORMALIZED) as writer:
                part = table.slice(int(start), int(end - start))
                for batch in part.to_batches(max_chunksize=self.run_batch_rows):
                    writer.write_batch(batch)
            runs.append(path)

    def years(self) -> list[int]:
        return sorted(self._runs)

    def merged(self, year: int) -> Generator[pa.RecordBatch, None, None]:
        """The year's rows in published order, in batches; its runs are
        deleted once read."""
        paths = self._runs.pop(year, [])
        files = [pa.OSFile(str(p), "rb") for p in paths]
        try:
            readers = [pa.ipc.open_file(f) for f in files]
            next_batch = [0] * len(readers)

            def more(i: int) -> bool:
                return next_batch[i] < readers[i].num_record_batches

            per_load = max(1, MERGE_ROWS // (max(1, len(readers)) * self.run_batch_rows))

            def load(i: int) -> pa.Table:
                end = min(next_batch[i] + per_load, readers[i].num_record_batches)
                batches = [readers[i].get_batch(b) for b in range(next_batch[i], end)]
                next_batch[i] = end
                return pa.Table.from_batches(batches, NORMALIZED)

            loaded = [pa.Table.from_batches([], NORMALIZED) for _ in readers]
            while True:
                for i in range(len(readers)):
                    # A run with more to read holds at least two instants, so
                    # the run that bounds the step gives at least one row.
                    while more(i) and (not loaded[i].num_rows or _one_instant(loaded[i])):
                        loaded[i] = pa.concat_tables([loaded[i], load(i)])
                if not any(t.num_rows for t in loaded):
                    break
                # Runs with more to read bound what is complete: the rows
                # before the smallest instant their loaded rows reach.
                bounds = [loaded[i]["observed_at"][-1].value for i in range(len(readers))
                          if more(i)]
                cutoff = pa.scalar(min(bounds), UTC_US) if bounds else None
                parts = []
                for i, table in enumerate(loaded):
                    if not table.num_rows:
                        continue
                    if cutoff is None:
                        count = table.num_rows
                    else:
                        count = pc.sum(pc.less(table["observed_at"], cutoff)).as_py() or 0
                    if count:
                        parts.append(table.slice(0, count))
                        loaded[i] = table.slice(count)
                done = pa.concat_tables(parts)
                del parts
                done = done.take(pc.sort_indices(done, SORT_KEYS))
                yield from done.combine_chunks().to_batches()
        finally:
            for f in files:
                f.close()
            for p in paths:
                p.unlink(missing_ok=True)

    def finish(self) -> None:
        """Spill what waits, before merging."""
        if self._waiting:
            self.spill()

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _one_instant(table: pa.Table) -> bool:
    column = table["observed_at"]
    return bool(column[0].value == column[-1].value)
