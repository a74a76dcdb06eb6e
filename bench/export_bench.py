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
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads (the machine is shared:
    CPU time is what contention does not inflate)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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

    rows, seconds = asyncio.run(main())
    return {"rows": rows, "seconds": seconds, "observations_seconds": marks["observations"],
            "observations_cpu": cpu_marks["observations"], "peak_rss_mb": peak_rss_mb()}


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


def generate(ref: dict[str, Any], count: int, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    sites = [(rng.uniform(50.8, 53.5), rng.uniform(3.4, 7.2)) for _ in range(3000)]
    base = datetime(2019, 1, 1, tzinfo=UTC)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for _ in range(count):
        lat, lon = rng.choice(sites)
        when = base + timedelta(seconds=rng.randrange(7 * 365 * 86400))
        rows.append((
            str(uuid.UUID(int=rng.getrandbits(128))), rng.choice(ref["users"]), ref["project"],
            rng.choice(ref["taxa"][:12]), rng.choice(ref["phases"][:4]),
            rng.choice(("yes", "no", "no", "unknown")), None, when, 60,
            round(lat + rng.gauss(0, 0.0002), 6), round(lon + rng.gauss(0, 0.0002), 6), 10.0,
            rng.choice(("open", "open", "open", "obscured", "private")), "", "CC-BY-4.0",
            rng.choice(("auto_accepted", "verified", "pending", "rejected")), 0, now, now,
            0, 0, False, 0, 0,
        ))
    return rows


COLUMNS = ("id", "user_id", "project_id", "taxon_id", "phenophase_id", "status", "intensity",
           "observed_at", "observed_utc_offset_min", "latitude", "longitude",
           "coordinate_uncertainty_m", "geoprivacy", "notes", "license", "review_status",
           "flag_count", "server_created_at", "server_updated_at", "created_seq", "updated_seq",
           "is_deleted", "client_revision", "client_changed_seq")


async def insert(url: str, ref: dict[str, Any], count: int, seed: int) -> None:
    chunk = 200_000
    for start in range(0, count, chunk):
        rows = generate(ref, min(chunk, count - start), seed + start)
        if url.startswith("sqlite://"):
            import sqlite3

            con = sqlite3.connect(url[len("sqlite://"):])
            con.execute("PRAGMA cache_size = -1000000")  # loading only: indexes stay cached
            con.executemany(
                f"INSERT INTO observations ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})",
                [(*r[:7], r[7].isoformat(sep=" "), *r[8:17], r[17].isoformat(sep=" "),
                  r[18].isoformat(sep=" "), *r[19:]) for r in rows],
            )
            con.commit()
            con.close()
        else:
            import asyncpg

            con = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
            await con.copy_records_to_table("observations", records=rows, columns=COLUMNS)
            await con.close()
        print(f"  inserted {start + len(rows):,} rows", file=sys.stderr)


def measure(url: str, work: Path, label: str) -> dict[str, Any]:
    raw = run_child("raw", url, str(work / f"raw-{label}.parquet"))
    export = run_child("export", url, str(work / f"export-{label}"))
    return {"raw": raw, "export": export}


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
    print(f"  peak RSS {export['peak_rss_mb']:.0f} MB "
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
        result = child_raw(*rest) if kind == "raw" else child_export(*rest)
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
