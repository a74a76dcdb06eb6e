"""The external merge sort gives each year's rows in the order a full sort
gives, with many runs, small batches and many rows sharing an instant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exports.observations import NORMALIZED, SORT_KEYS
from exports.runs import YearRuns


def _rows(rng: np.random.Generator, n: int, start: int) -> pa.RecordBatch:
    # Few distinct instants (ties), few names, three years.
    year = rng.choice([2021, 2022, 2024], n)
    instant = (year - 1970) * 365 * 86_400_000_000 + rng.integers(0, 40, n) * 1_000_000
    columns = {}
    for field in NORMALIZED:
        if field.name == "id":
            columns["id"] = pa.array([f"id-{start + i:07d}" for i in rng.permutation(n)])
        elif field.name == "observed_at":
            columns[field.name] = pa.array(instant, pa.int64()).cast(field.type)
        elif field.name == "_year":
            columns[field.name] = pa.array(year, pa.int16())
        elif field.name == "_name":
            columns[field.name] = pa.array(rng.integers(0, 3, n), pa.int64())
        elif pa.types.is_string(field.type):
            columns[field.name] = pa.array([str(v) for v in rng.integers(0, 5, n)])
        elif pa.types.is_floating(field.type):
            columns[field.name] = pa.array(rng.random(n))
        elif pa.types.is_timestamp(field.type):
            columns[field.name] = pa.array(instant, pa.int64()).cast(field.type)
        else:
            columns[field.name] = pa.array(rng.integers(0, 100, n), field.type)
    return pa.RecordBatch.from_pydict(columns, schema=NORMALIZED)


def test_merged_years_equal_a_full_sort(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    batches = [_rows(rng, 997, i * 997) for i in range(12)]
    runs = YearRuns(tmp_path / "runs", budget_rows=1500, run_batch_rows=64)
    for batch in batches:
        runs.add(batch)
    runs.finish()
    assert runs.years() == [2021, 2022, 2024]
    assert len(list((tmp_path / "runs").iterdir())) > 3 * 5  # many runs per year
    everything = pa.Table.from_batches(batches, NORMALIZED)
    for year in runs.years():
        expected = everything.filter(pc.equal(everything["_year"], year))
        expected = expected.take(pc.sort_indices(expected, SORT_KEYS))
        got = pa.Table.from_batches(list(runs.merged(year)), NORMALIZED)
        assert got.num_rows == expected.num_rows
        assert got["id"].to_pylist() == expected["id"].to_pylist()
        assert got.equals(expected.combine_chunks())
    assert list((tmp_path / "runs").iterdir()) == []  # runs are deleted once merged
    runs.remove()
    assert not (tmp_path / "runs").exists()
