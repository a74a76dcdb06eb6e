"""Benchmark of the open-data export (issue #6).

    .venv/bin/python bench/export_bench.py [--rows 5000000] [--checkpoint 1000000]
                                           [--postgres postgres://postgres@127.0.0.1:5432/x]
                                           [--no-sqlite]

Fills a fresh database (SQLite in a temporary folder; PostgreSQL too when
``--postgres`` names a server, on which a database is created and dropped)
with realistic observations (volunteers revisiting a few thousand sites), then,
each in a fresh child process so that peak RSS is its own:

- the raw limit: a plain cursor read of the same published rows, written with
  pyarrow's ParquetWriter (zstd), no transformation;
- the export: ``server.releases.publish``, everything a release holds.

It runs both at ``--checkpoint`` rows and at ``--rows`` rows, and prints every
figure as a ratio: export rate / raw rate (goal >= 0.7), peak RSS / 400 MB
(goal < 1), and peak RSS at N rows / at the checkpoint (flat: about 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RSS_LIMIT_MB = 400
RAW_QUERY = (
    "SELECT o.id, o.user_id, o.project_id, COALESCE(o.verified_taxon_id, o.taxon_id), "
    "COALESCE(o.verified_phenophase_id, o.phenophase_id), o.status, o.intensity, "
    "o.observed_at, o.observed_utc_offset_min, o.latitude, o.longitude, "
    "o.coordinate_uncertainty_m, o.geoprivacy, o.notes, o.license, o.review_status, "
    "o.server_updated_at, o.flag_count FROM observations o "
    "WHERE o.is_deleted = false AND o.review_status <> 'rejected'"
)
RAW_NAMES = ["id", "user_id", "project_id", "taxon_id", "phenophase_id", "status", "intensity",
             "observed_at", "offset", "latitude", "longitude", "uncertainty", "geoprivacy",
             "notes", "license", "review_status", "modified", "flag_count"]


def peak_rss_mb() -> float:
    """This process's peak RSS since it started (VmHWM: ``ru_maxrss`` would
    count the bench's own memory, which a child inherits at fork)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


class TreeRss:
    """Peak RSS of this process and its children together (the SQLite export
    reads in a child process), sampled every 20 ms."""

    def __init__(self) -> None:
        import threading

        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.02):
            pids = [me]
            for pid in pids:
                pids.extend(_children(pid))
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in pids))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads (the machine is shared:
    CPU time is what contention does not inflate)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the SQLite reader, once done
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


# ---------------------------------------------------------------- children


def child_raw(url: str, out: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    cpu = cpu_seconds()
    rows = 0
    writer = None

    def write(chunk: list[Any]) -> None:
        nonlocal writer
        columns = [pa.array(list(c)) for c in zip(*chunk, strict=True)]
        batch = pa.record_batch(columns, names=RAW_NAMES)
        if writer is None:
            writer = pq.ParquetWriter(out, batch.schema, compression="zstd")
        writer.write_batch(batch)

    if url.startswith("sqlite://"):
        import sqlite3

        con = sqlite3.connect(url[len("sqlite://"):])
        cur = con.execute(RAW_QUERY)
        while chunk := cur.fetchmany(20_000):
            write(chunk)
            rows += len(chunk)
    else:
        import asyncpg

        async def read() -> int:
            count = 0
            con = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
            async with con.transaction():
                cursor = await con.cursor(RAW_QUERY)
                while chunk := await cursor.fetch(20_000):
                    write([tuple(r) for r in chunk])
                    count += len(chunk)
            await con.close()
            return count

        rows = asyncio.run(read())
    if writer is not None:
        writer.close()
    return {"rows": rows, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
            "cpu": cpu_seconds() - cpu}


def child_raw_adbc(url: str, out: str) -> dict[str, Any]:
    """A stricter limit, for information: the same rows read by ADBC (as the
    export reads them) and written with ParquetWriter."""
    import pyarrow.parquet as pq

    from exports import arrow_reader

    start = time.perf_counter()
    cpu = cpu_seconds()
    tree = TreeRss()
    rows = 0
    writer = None
    if url.startswith("sqlite://"):
        batches = arrow_reader.sqlite_batches(url[len("sqlite://"):], RAW_QUERY)
    else:
        batches = arrow_reader.postgres_batches(url, RAW_QUERY)
    for batch in batches:
        if writer is None:
            writer = pq.ParquetWriter(out, batch.schema, compression="zstd")
        writer.write_batch(batch)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": max(peak_rss_mb(), tree.stop()),
            "cpu": cpu_seconds() - cpu}


def child_export(url: str, data_dir: str) -> dict[str, Any]:
    from server.database import Database
    from server.releases import publish
    from server.settings import Settings

    settings = Settings.from_env({"PHENOSYNC_DATA_DIR": data_dir, "PHENOSYNC_DATABASE_URL": url,
                                  "PHENOSYNC_SECRET_KEY": "bench"})
    marks: dict[str, float] = {}
    cpu_marks: dict[str, float] = {}

    async def main() -> Any:
        database = Database(settings.database_url)
        await database.open()
        try:
            with database.context:
                start = time.perf_counter()
                cpu = cpu_seconds()

                def progress(stage: str, rows: int) -> None:
                    marks[stage] = time.perf_counter() - start
                    cpu_marks[stage] = cpu_seconds() - cpu

                release = await publish(settings, database, progress=progress)
                return release.observation_count, time.perf_counter() - start
        finally:
            await database.close()

    tree = TreeRss()
    rows, seconds = asyncio.run(main())
    tree_peak = tree.stop()
    return {"rows": rows, "seconds": seconds, "observations_seconds": marks["observations"],
            "observations_cpu": cpu_marks["observations"],
            "peak_rss_mb": max(peak_rss_mb(), tree_peak), "own_peak_rss_mb": peak_rss_mb()}


def run_child(kind: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", kind, *args],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(done.stderr)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- data


async def prepare(url: str) -> dict[str, Any]:
    """Migrate, load the vocabulary, one project and 200 observers."""
    # Tortoise caches INSERT statements per connection name, not per dialect.
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    from server.database import Database
    from server.models.accounts import User
    from server.models.reference import Phenophase, Project, Taxon
    from server.vocabulary import load_vocabulary

    EXECUTOR_CACHE.clear()
    database = Database(url)
    await database.open()
    with database.context:
        await database.migrate()
        await load_vocabulary()
        project = await Project.create(slug="bench", name="Bench")
        users = [await User.create(username=f"bench{i}", password_hash="!") for i in range(200)]
        taxa = [t.id for t in await Taxon.all()]
        phases = [p.id for p in await Phenophase.all()]
    await database.close()
    return {"project": project.id, "users": [u.id for u in users], "taxa": taxa,
            "phases": phases}


COLUMNS = ("id", "user_id", "project_id", "taxon_id", "phenophase_id", "status", "intensity",
           "observed_at", "observed_utc_offset_min", "latitude", "longitude",
           "coordinate_uncertainty_m", "geoprivacy", "notes", "license", "review_status",
           "flag_count", "server_created_at", "server_updated_at", "created_seq", "updated_seq",
           "is_deleted", "client_revision", "client_changed_seq")
FLAG_COLUMNS = ("observation_id", "code", "message", "created_at")
#: Rows per generated chunk and per transaction.
CHUNK_ROWS = 250_000
SITES = 3000
FLAGGED = 0.01  # share of observations with a quality flag


def _choice(rng: Any, options: list[Any], n: int, p: list[float] | None = None) -> Any:
    import pyarrow as pa

    return pa.array(options).take(pa.array(rng.choice(len(options), n, p=p)))


def generate(ref: dict[str, Any], count: int, seed: int) -> tuple[Any, Any]:
    """``count`` observations (and their quality flags) as Arrow tables, built
    column by column with numpy: volunteers revisiting a few thousand sites,
    at random moments of seven years, in random order."""
    import numpy as np
    import pyarrow as pa

    sites = np.random.default_rng(0)  # the same sites in every chunk
    site_lat = sites.uniform(50.8, 53.5, SITES)
    site_lon = sites.uniform(3.4, 7.2, SITES)
    rng = np.random.default_rng(seed)
    n = count
    hexes = rng.bytes(16 * n).hex()
    ids = pa.array([f"{hexes[i:i + 8]}-{hexes[i + 8:i + 12]}-4{hexes[i + 13:i + 16]}-"
                    f"a{hexes[i + 17:i + 20]}-{hexes[i + 20:i + 32]}"
                    for i in range(0, 32 * n, 32)], pa.string())
    site = rng.integers(0, SITES, n)
    base = np.datetime64("2019-01-01T00:00:00", "s")
    when = base + rng.integers(0, 7 * 365 * 86400, n).astype("timedelta64[s]")
    now = pa.repeat(pa.scalar(datetime(2026, 1, 1, tzinfo=UTC), pa.timestamp("s", "UTC")), n)
    flag_count = (rng.random(n) < FLAGGED).astype(np.int16)
    zeros = pa.array(np.zeros(n, np.int64))
    table = pa.table({
        "id": ids,
        "user_id": _choice(rng, ref["users"], n),
        "project_id": pa.repeat(pa.scalar(ref["project"], pa.int64()), n),
        "taxon_id": _choice(rng, ref["taxa"][:12], n),
        "phenophase_id": _choice(rng, ref["phases"][:4], n),
        "status": _choice(rng, ["yes", "no", "no", "unknown"], n),
        "intensity": pa.nulls(n, pa.string()),
        "observed_at": pa.array(when, pa.timestamp("s")).cast(pa.timestamp("s", "UTC")),
        "observed_utc_offset_min": pa.repeat(pa.scalar(60, pa.int64()), n),
        "latitude": pa.array(np.round(site_lat[site] + rng.normal(0, 0.0002, n), 6)),
        "longitude": pa.array(np.round(site_lon[site] + rng.normal(0, 0.0002, n), 6)),
        "coordinate_uncertainty_m": pa.repeat(pa.scalar(10.0), n),
        "geoprivacy": _choice(rng, ["open", "open", "open", "obscured", "private"], n),
        "notes": pa.repeat(pa.scalar(""), n),
        "license": pa.repeat(pa.scalar("CC-BY-4.0"), n),
        "review_status": _choice(rng, ["auto_accepted", "verified", "pending", "rejected"], n),
        "flag_count": pa.array(flag_count),
        "server_created_at": now,
        "server_updated_at": now,
        "created_seq": zeros,
        "updated_seq": zeros,
        "is_deleted": pa.repeat(pa.scalar(False), n),
        "client_revision": zeros,
        "client_changed_seq": zeros,
    })
    flagged = table.filter(pa.array(flag_count.astype(bool)))
    flags = pa.table({
        "observation_id": flagged["id"],
        "code": pa.repeat(pa.scalar("coarse_location"), flagged.num_rows),
        "message": pa.repeat(pa.scalar("coordinates rounded to 0.01 degree"), flagged.num_rows),
        "created_at": flagged["server_created_at"],
    })
    return table, flags


def _sqlite_rows(table: Any) -> list[tuple[Any, ...]]:
    """Rows as SQLite keeps them (datetimes as "YYYY-MM-DD HH:MM:SS+00:00")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for name in table.column_names:
        column = table[name]
        if pa.types.is_timestamp(column.type):
            column = pc.binary_join_element_wise(
                column.cast(pa.timestamp("s")).cast(pa.string()), "+00:00", "")
        columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


async def _indexes(url: str, drop: bool, saved: list[str]) -> list[str]:
    """Drop the secondary indexes of the loaded tables (returning how to build
    them again), or build the saved ones."""
    tables = ("observations", "quality_flags")
    if url.startswith("sqlite://"):
        import sqlite3

        con = sqlite3.connect(url[len("sqlite://"):])
        if drop:
            found = con.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                f"AND tbl_name IN {tables}").fetchall()
            for name, _ in found:
                con.execute(f'DROP INDEX "{name}"')
            saved = [sql for _, sql in found]
        else:
            con.execute("PRAGMA cache_size = -1000000")
            for sql in saved:
                con.execute(sql)
        con.commit()
        con.close()
        return saved
    import asyncpg

    con = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        if drop:
            found = await con.fetch(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY($1) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
                list(tables))
            for row in found:
                await con.execute(f'DROP INDEX "{row["indexname"]}"')
            saved = [row["indexdef"] for row in found]
        else:
            await con.execute("SET maintenance_work_mem = '512MB'")
            for sql in saved:
                await con.execute(sql)
            await con.execute("ANALYZE observations")
        return saved
    finally:
        await con.close()


async def insert(url: str, ref: dict[str, Any], count: int, seed: int) -> None:
    """Load ``count`` generated rows: secondary indexes dropped first and built
    after, one transaction per chunk (executemany on SQLite, COPY on PostgreSQL)."""
    import io

    import pyarrow.csv as pacsv

    start_time = time.perf_counter()
    saved = await _indexes(url, True, [])
    for start in range(0, count, CHUNK_ROWS):
        table, flags = generate(ref, min(CHUNK_ROWS, count - start), seed + start)
        if url.startswith("sqlite://"):
            import sqlite3

            con = sqlite3.connect(url[len("sqlite://"):])
            con.execute("PRAGMA cache_size = -1000000")  # loading only: the primary key cached
            con.executemany(
                f"INSERT INTO observations ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})", _sqlite_rows(table))
            con.executemany(
                f"INSERT INTO quality_flags ({', '.join(FLAG_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(FLAG_COLUMNS))})", _sqlite_rows(flags))
            con.commit()
            con.close()
        else:
            import asyncpg

            con = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
            try:
                async with con.transaction():
                    for name, data in (("observations", table), ("quality_flags", flags)):
                        text = io.BytesIO()
                        pacsv.write_csv(data, text)
                        text.seek(0)
                        await con.copy_to_table(name, source=text, columns=list(data.column_names),
                                                format="csv", header=True)
            finally:
                await con.close()
        print(f"  inserted {start + table.num_rows:,} rows "
              f"({time.perf_counter() - start_time:.0f} s)", file=sys.stderr)
    await _indexes(url, False, saved)
    print(f"  indexes built ({time.perf_counter() - start_time:.0f} s)", file=sys.stderr)


def measure(url: str, work: Path, label: str) -> dict[str, Any]:
    raw = run_child("raw", url, str(work / f"raw-{label}.parquet"))
    adbc = run_child("raw-adbc", url, str(work / f"raw-adbc-{label}.parquet"))
    export = run_child("export", url, str(work / f"export-{label}"))
    for path in (work / f"raw-{label}.parquet", work / f"raw-adbc-{label}.parquet"):
        path.unlink(missing_ok=True)
    shutil.rmtree(work / f"export-{label}", ignore_errors=True)
    return {"raw": raw, "adbc": adbc, "export": export}


def report(backend: str, label: str, m: dict[str, Any]) -> None:
    raw, export = m["raw"], m["export"]
    raw_rate = raw["rows"] / raw["seconds"]
    whole_rate = export["rows"] / export["seconds"]
    obs_rate = export["rows"] / export["observations_seconds"]
    print(f"[{backend}] {label}: {export['rows']:,} published rows")
    print(f"  raw limit {raw_rate:,.0f} rows/s, peak RSS {raw['peak_rss_mb']:.0f} MB")
    print(f"  export (Parquet+DwC+metrics pass) {obs_rate:,.0f} rows/s "
          f"= {obs_rate / raw_rate:.2f}x raw (goal >= 0.7)")
    print(f"  export (whole release) {whole_rate:,.0f} rows/s "
          f"= {whole_rate / raw_rate:.2f}x raw")
    print(f"  CPU seconds, raw / export pass = "
          f"{raw['cpu'] / export['observations_cpu']:.2f}x "
          f"({raw['cpu']:.1f} s / {export['observations_cpu']:.1f} s; contention-free)")
    adbc = m["adbc"]
    adbc_rate = adbc["rows"] / adbc["seconds"]
    print(f"  (stricter, for information: an ADBC read + ParquetWriter {adbc_rate:,.0f} rows/s; "
          f"export pass = {obs_rate / adbc_rate:.2f}x of it, CPU "
          f"{adbc['cpu'] / export['observations_cpu']:.2f}x)")
    print(f"  peak RSS {export['peak_rss_mb']:.0f} MB (with the reader process; the export "
          f"process alone {export['own_peak_rss_mb']:.0f} MB) "
          f"= {export['peak_rss_mb'] / RSS_LIMIT_MB:.2f}x the {RSS_LIMIT_MB} MB limit", flush=True)


async def bench(url: str, backend: str, rows: int, checkpoint: int, work: Path) -> None:
    ref = await prepare(url)
    print(f"[{backend}] inserting {checkpoint:,} rows", file=sys.stderr)
    await insert(url, ref, checkpoint, seed=1)
    small = measure(url, work, f"{backend}-small")
    report(backend, "checkpoint", small)  # at once: a long run may be stopped later
    print(f"[{backend}] inserting {rows - checkpoint:,} more rows", file=sys.stderr)
    await insert(url, ref, rows - checkpoint, seed=10**9)
    large = measure(url, work, f"{backend}-large")
    report(backend, "full", large)
    flat = large["export"]["peak_rss_mb"] / small["export"]["peak_rss_mb"]
    print(f"[{backend}] peak RSS at {large['export']['rows']:,} rows / at "
          f"{small['export']['rows']:,} rows = {flat:.2f}x (flat: about 1)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--checkpoint", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL (optional)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        run = {"raw": child_raw, "raw-adbc": child_raw_adbc, "export": child_export}[kind]
        result = run(*rest)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="phenosync-bench-") as tmp:
        work = Path(tmp)
        if not args.no_sqlite:
            asyncio.run(bench(f"sqlite://{work / 'bench.sqlite3'}", "sqlite", args.rows,
                              args.checkpoint, work))
        if args.postgres:
            import asyncpg

            name = f"phenosync_bench_{os.getpid()}_{secrets.token_hex(3)}"
            base = args.postgres.rsplit("/", 1)[0]

            async def admin(sql: str) -> None:
                con = await asyncpg.connect(args.postgres.replace("postgres://",
                                                                  "postgresql://", 1))
                await con.execute(sql)
                await con.close()

            asyncio.run(admin(f'CREATE DATABASE "{name}"'))
            try:
                asyncio.run(bench(f"{base}/{name}", "postgres", args.rows, args.checkpoint,
                                  work))
            finally:
                asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
