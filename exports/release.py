"""Build a release into a directory, streaming from a ``ReleaseSource``.

The caller gives an empty directory (a temporary one beside the releases)
and moves it into place when this returns; this module only writes files.
CPU-heavy steps (Arrow transforms, Parquet, CSV, zip, hashing) run in a
worker thread, so an event loop that awaits ``build_release`` stays
responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
from collections.abc import AsyncGenerator, Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from exports import checksums, metadata, schema
from exports.dwca import DarwinCoreArchive, eml_xml
from exports.observations import Lookup, normalized, published_batch
from exports.parquet import TableWriter
from exports.phenometrics import Phenometrics
from exports.privacy import Privacy
from exports.runs import YearRuns
from exports.source import PhotoRow, ReleaseSource
from schemas.dataset import SCHEMA_VERSION

T = TypeVar("T")
#: ``progress(stage, rows_done)``: called as work advances (rows since last call).
Progress = Callable[[str, int], None]
#: Licenses under which a photo may be listed in an open release.
OPEN_LICENSES = frozenset({"CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0"})
DERIVATIVE_SIZES = (320, 1024, 2048)
RETRACTED_BATCH = 5000


@dataclass
class ReleaseSummary:
    version: str
    counts: dict[str, int]
    years: list[int]
    files: list[dict[str, Any]] = field(default_factory=list)
    sha256sums: str = ""


async def _prefetch(batches: AsyncGenerator[T, None], depth: int = 2) -> AsyncGenerator[T, None]:
    """Read the next batches while the current one is transformed and written:
    the database and the writer work at the same time, and at most ``depth``
    batches wait in memory."""
    queue: asyncio.Queue[tuple[T | None, bool]] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        async with contextlib.aclosing(batches) as reading:
            try:
                async for batch in reading:
                    await queue.put((batch, False))
            except asyncio.CancelledError:
                raise  # the consumer is gone: no end mark (the queue may be full)
            except BaseException:
                await queue.put((None, True))  # the consumer re-raises it
                raise
        await queue.put((None, True))

    task = asyncio.create_task(produce())
    try:
        while True:
            batch, done = await queue.get()
            if done:
                break
            yield batch  # type: ignore[misc]
        await task  # re-raises a failed read
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _quiet(stage: str, rows: int) -> None:
    return None


_M_ARENA_MAX = -8  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def _returning_memory_pool() -> None:
    """jemalloc for Arrow, where the wheel has it: Arrow's default (mimalloc)
    keeps what the export freed, so the process's RSS stays at its peak; with
    jemalloc it is lower (about 300 MB against 430 MB at 750k rows) and falls
    again.  Process-wide: Arrow is used only by the exports."""
    with contextlib.suppress(NotImplementedError, pa.ArrowNotImplementedError):
        if pa.default_memory_pool().backend_name != "jemalloc":
            pa.set_memory_pool(pa.jemalloc_memory_pool())
            pa.jemalloc_set_decay_ms(0)
    # glibc's malloc (Python objects, the IPC bytes read from the SQLite
    # reader's pipe) keeps freed memory in one arena per thread and raises
    # its mmap threshold as large blocks are freed, so the RSS creeps up:
    # two arenas, and blocks of 1 MiB or more always mapped (freed at once).
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 2)
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def _write_csv(path: Path, table: pa.Table) -> None:
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))


def previous_ids(previous: Path) -> Any:
    """The occurrenceIDs of a release, in small batches, straight from its files."""
    for path in sorted((previous / "data").glob("observations-*.parquet")):
        handle = pq.ParquetFile(path)
        for batch in handle.iter_batches(batch_size=RETRACTED_BATCH, columns=["occurrenceID"]):
            yield batch.column(0).to_pylist()


async def build_release(
    source: ReleaseSource,
    target: Path,
    info: metadata.ReleaseInfo,
    privacy: Privacy,
    *,
    previous: Path | None = None,
    media_base: str = "",
    progress: Progress = _quiet,
) -> ReleaseSummary:
    _returning_memory_pool()
    data = target / "data"
    data.mkdir(parents=True)
    taxa = await source.taxa()
    phases = await source.phenophases()
    lookup = Lookup(taxa, phases)
    kv = {"dataset_version": info.version, "schema_version": SCHEMA_VERSION,
          "license": info.license}
    dwca = DarwinCoreArchive(target / ".dwca", {p.code: p.ppo_iri for p in phases})
    metrics = Phenometrics()
    resources: list[dict[str, Any]] = []
    counts = {"observations": 0, "media": 0, "retracted": 0, "phenometrics": 0}

    # Observations, read once in storage order, split by year and sorted in
    # bounded memory (exports.runs); then one file per year, whose sorted
    # batches also feed the archive and the phenometrics.
    runs = YearRuns(target / ".runs")
    beside = ThreadPoolExecutor(1, thread_name_prefix="release-dwca")
    side: list[Future[None]] = []

    def add_beside(batch: pa.RecordBatch) -> None:
        dwca.add(batch)
        metrics.add(batch)

    def side_done() -> None:
        while side:
            side.pop().result()

    try:
        def spill(batch: pa.RecordBatch) -> int:
            runs.add(normalized(batch, lookup))
            return batch.num_rows

        # Closed at once when a step fails (the reader holds a connection or a
        # child process), not whenever the generator is collected.
        async with contextlib.aclosing(_prefetch(source.observations())) as batches:
            async for batch in batches:
                progress("reading", await asyncio.to_thread(spill, batch))
        await asyncio.to_thread(runs.finish)
        years = runs.years()
        metrics_csv = pacsv.CSVWriter(target / "phenometrics.csv", schema.PHENOMETRICS,
                                      write_options=pacsv.WriteOptions(quoting_style="needed"))

        def finish_metrics() -> int:
            count = 0
            for batch in metrics.finish_year():
                metrics_csv.write_batch(batch)
                count += batch.num_rows
            return count

        for year in years:
            path = data / f"observations-{year}.parquet"
            writer = TableWriter(path, schema.OBSERVATIONS, {**kv, "year": str(year)})
            merged = runs.merged(year)

            def step(writer: TableWriter = writer,
                     merged: Generator[pa.RecordBatch, None, None] = merged) -> int:
                rows = next(merged, None)
                if rows is None:
                    return -1
                batch = published_batch(rows, lookup, privacy)
                # The archive and the phenometrics take the batch in a second
                # thread while this one writes the Parquet file and reads on
                # (at most two batches in flight; Arrow lets go of the GIL).
                side_done()
                side.append(beside.submit(add_beside, batch))
                writer.write(batch)
                return batch.num_rows

            try:
                while (written := await asyncio.to_thread(step)) >= 0:
                    progress("observations", written)
                    counts["observations"] += written
                await asyncio.to_thread(side_done)
            finally:
                await asyncio.to_thread(merged.close)
                await asyncio.to_thread(writer.close)
            counts["phenometrics"] += await asyncio.to_thread(finish_metrics)
            resources.append(metadata.resource(
                f"observations-{year}", "observations", f"data/{path.name}", "parquet",
                writer.rows,
            ))
        progress("observations", 0)
    finally:
        await asyncio.to_thread(beside.shutdown)
        await asyncio.to_thread(runs.remove)

    # Site phenometrics.
    metrics_csv.close()
    resources.append(metadata.resource(
        "phenometrics", "phenometrics", "phenometrics.csv", "csv", counts["phenometrics"],
    ))
    progress("phenometrics", 0)

    # Media.
    with TableWriter(target / "media.parquet", schema.MEDIA, kv) as media_writer:
        async for photos in source.photos():
            batch = _media_batch(photos, privacy, media_base)
            await asyncio.to_thread(media_writer.write, batch)
            counts["media"] += batch.num_rows
    resources.append(metadata.resource(
        "media", "media", "media.parquet", "parquet", counts["media"]
    ))
    progress("media", 0)

    # Vocabularies.
    _write_csv(target / "taxa.csv", pa.Table.from_pylist([
        {"scientificName": t.scientific_name, "taxonRank": t.rank,
         "vernacularNameNL": t.vernacular_nl or None, "vernacularNameEN": t.vernacular_en or None,
         "group": t.group, "sensitive": t.sensitive} for t in taxa
    ], schema=schema.arrow_schema("taxa")))
    _write_csv(target / "phenophases.csv", pa.Table.from_pylist([
        {"phenophaseID": p.code, "phenophase": p.name, "definition": p.definition,
         "ppoIRI": p.ppo_iri, "groups": "|".join(p.groups)} for p in phases
    ], schema=schema.arrow_schema("phenophases")))
    resources.append(metadata.resource("taxa", "taxa", "taxa.csv", "csv", len(taxa)))
    resources.append(metadata.resource(
        "phenophases", "phenophases", "phenophases.csv", "csv", len(phases)
    ))

    # Retracted since the previous release.
    retracted: list[str] = []
    if previous is not None:
        for ids in previous_ids(previous):
            still = await source.still_published(ids)
            retracted.extend(i for i in ids if i not in still)
    counts["retracted"] = len(retracted)
    _write_csv(target / "retracted.csv", pa.table(
        {"occurrenceID": pa.array(sorted(retracted), pa.string())},
        schema=schema.arrow_schema("retracted"),
    ))
    resources.append(metadata.resource(
        "retracted", "retracted", "retracted.csv", "csv", len(retracted)
    ))
    progress("retracted", 0)

    # The Darwin Core Archive.
    eml = eml_xml(title=info.title, version=info.version, abstract=info.abstract,
                  publisher=info.publisher, license_url=info.license_url, created=info.created)
    await asyncio.to_thread(dwca.finish, target / "dwca.zip", eml)
    progress("dwca", 0)

    # Descriptions, then the checksums of everything.
    files = [(f"data/observations-{y}.parquet", f"observations of {y}") for y in years] + [
        ("media.parquet", "photos: derivative URLs, license, rights holder"),
        ("taxa.csv", "taxa"),
        ("phenophases.csv", "phenophases with definitions and PPO IRIs"),
        ("phenometrics.csv", "site phenometrics (first yes, last yes, prior no)"),
        ("retracted.csv", "occurrenceIDs withdrawn since the previous release"),
        ("dwca.zip", "Darwin Core Archive: occurrence core + MeasurementOrFact"),
        ("datapackage.json", "Frictionless Data Package (v2), a Table Schema per resource"),
        ("CITATION.cff", "how to cite"), ("LICENSE", "license"),
        ("CHANGELOG.md", "changes per release"), ("SHA256SUMS", "checksums"),
    ]
    metadata.write_json(target / "datapackage.json", metadata.datapackage(info, resources))
    (target / "CITATION.cff").write_text(metadata.citation(info))
    (target / "README.md").write_text(metadata.readme(info, files))
    (target / "LICENSE").write_text(metadata.license_text(info))
    (target / "CHANGELOG.md").write_text(metadata.changelog(info, counts))
    sums = await asyncio.to_thread(checksums.write_sums, target)
    summary = ReleaseSummary(
        version=info.version, counts=counts, years=years,
        files=[{"path": p, "bytes": (target / p).stat().st_size, "sha256": h}
               for p, h in sums.items()],
        sha256sums=checksums.file_sha256(target / checksums.NAME),
    )
    return summary


def _media_batch(photos: list[PhotoRow], privacy: Privacy, base: str) -> pa.RecordBatch:
    rows = []
    for p in photos:
        if p.license not in OPEN_LICENSES:
            continue
        url = f"{base}/api/v1/photos/{p.id}/derivatives/"
        holder = privacy.pseudonym(p.user_id)
        rows.append({
            "mediaID": p.id, "occurrenceID": p.observation_id, "type": "StillImage",
            "format": "image/jpeg", "identifier": url + "1024", "thumbnailURL": url + "320",
            "largeURL": url + "2048", "license": p.license, "rightsHolder": holder,
        })
    return pa.RecordBatch.from_pylist(rows, schema=schema.MEDIA)


def read_datapackage(release: Path) -> dict[str, Any]:
    return dict(json.loads((release / "datapackage.json").read_text()))
