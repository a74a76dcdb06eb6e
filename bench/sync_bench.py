"""Sync benchmark (issue 3, part 8): one run, every figure a ratio to its goal.

    .venv/bin/python bench/sync_bench.py [--push N] [--small N] [--large N] [--quick]

Per backend (SQLite, and PostgreSQL when PHENOSYNC_BENCH_POSTGRES_URL or
PHENOSYNC_TEST_POSTGRES_URL is set), with the server under uvicorn on a
loopback port, in the same run on the same machine (the peers are measured
just before each backend):

- push throughput: observations/s in batches of 500 over HTTP, against
  (a) ``sqlite3.executemany`` of the same rows, batches of 500 each in its own
  transaction, into the same ``observations`` table of a freshly migrated
  SQLite database (goal >= 0.35x) and (b) pouchdb-server (in memory)
  ``_bulk_docs`` with the same documents (goal >= 1.5x);
- pull throughput: observations/s of a first pull in pages of 500, against
  pouchdb-server ``_changes?include_docs=true`` in pages of 500 (goal >= 1.5x);
- pull page latency (median of a 500-record page pulled from a cursor 2,000
  writes back) with ``--large`` stored observations against ``--small``
  (goal: within 1.5x).  The rows are written straight into the database
  (executemany / COPY) with correct sequence numbers, then ANALYZEd.

Request bodies are serialised before the clock starts, for both servers.
Defaults: --push 20000 --small 10000 --large 1000000 (about 3 minutes for
both backends on 2 cores); --quick: 5000 / 10000 / 100000.
pouchdb-server comes from bench/node (``make bench-deps`` = npm ci there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.transactions import in_transaction

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.database import Database  # noqa: E402
from server.models.accounts import Membership, User  # noqa: E402
from server.models.reference import Phenophase, Project, ProjectTaxon, Taxon  # noqa: E402
from server.models.sequence import next_seq  # noqa: E402
from server.tokens import issue  # noqa: E402
from server.vocabulary import load_vocabulary  # noqa: E402

BATCH = 500
PAGE = 500
POUCHDB_SERVER = ROOT / "bench" / "node" / "node_modules" / ".bin" / "pouchdb-server"
CET = timezone(timedelta(hours=1))
GOALS = {"push_raw": 0.35, "push_pouch": 1.5, "pull_pouch": 1.5, "latency": 1.5}


# --- the world: vocabulary, a project, users with tokens ----------------------
@dataclass
class World:
    project_id: int
    taxon_id: int
    phenophase_id: int
    users: dict[str, tuple[int, str]]  # name -> (id, token)


async def _prepare(url: str, users: tuple[str, ...]) -> World:
    # Tortoise caches INSERT statements per connection name, not per dialect.
    EXECUTOR_CACHE.clear()
    database = Database(url)
    await database.open()
    try:
        with database.context:
            await database.migrate()
            await load_vocabulary()
            async with in_transaction() as conn:
                seq = await next_seq(conn)
                project = await Project.create(
                    slug="bench", name="Bench", min_latitude=50.75, min_longitude=3.35,
                    max_latitude=53.56, max_longitude=7.23, created_seq=seq, updated_seq=seq,
                    using_db=conn,
                )
            hazel = await Taxon.get(scientific_name="Corylus avellana")
            await ProjectTaxon.create(project=project, taxon=hazel)
            flowers = await Phenophase.get(code="open_flowers")
            made = {}
            for name in users:
                user = await User.create(username=name, display_name=name, password_hash="!")
                await Membership.create(user=user, project=project, role="volunteer")
                token, _ = await issue(user)
                made[name] = (user.id, token)
            return World(project.id, hazel.id, flowers.id, made)
    finally:
        await database.close()


def prepare(url: str, users: tuple[str, ...] = ("pusher", "bulk")) -> World:
    return asyncio.run(_prepare(url, users))


# --- the rows -------------------------------------------------------------------
def wire_records(world: World, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(2025, 2, 1, 9, 0, tzinfo=UTC)
    out = []
    for _ in range(count):
        observed = start + timedelta(minutes=rng.randrange(0, 200 * 24 * 60))
        yes = rng.random() < 0.7
        out.append({
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "project_id": str(world.project_id),
            "taxon_id": str(world.taxon_id),
            "phenophase_id": str(world.phenophase_id),
            "status": "yes" if yes else "no",
            "intensity": rng.choice(["lt5", "5_24", "25_49"]) if yes else None,
            "observed_at": observed.astimezone(CET).isoformat(),
            "latitude": round(51.0 + rng.random() * 2, 6),
            "longitude": round(4.0 + rng.random() * 2, 6),
            "coordinate_uncertainty_m": rng.choice([5, 10, 30]),
            "geoprivacy": "open",
            "notes": rng.choice(["", "Sunny.", "After a cold night, catkins open."]),
            "license": "CC-BY-4.0",
            "created_at": int(observed.timestamp() * 1000),
            "updated_at": int(observed.timestamp() * 1000),
        })
    return out


COLUMNS = (
    "created_seq", "updated_seq", "is_deleted", "id", "status", "intensity", "observed_at",
    "observed_utc_offset_min", "latitude", "longitude", "coordinate_uncertainty_m",
    "geoprivacy", "notes", "license", "review_status", "flag_count", "server_created_at",
    "server_updated_at", "client_revision", "client_changed_seq", "client_created_at",
    "client_updated_at", "phenophase_id", "project_id", "taxon_id", "user_id",
)


def row_values(rec: dict[str, Any], user_id: int, seq: int, now: datetime) -> tuple[Any, ...]:
    observed = datetime.fromisoformat(rec["observed_at"])
    offset = int(observed.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    utc = observed.astimezone(UTC)
    clock = datetime.fromtimestamp(rec["created_at"] / 1000, tz=UTC)
    return (
        seq, seq, False, rec["id"], rec["status"], rec["intensity"], utc, offset,
        rec["latitude"], rec["longitude"], float(rec["coordinate_uncertainty_m"]),
        rec["geoprivacy"], rec["notes"], rec["license"], "pending", 0, now, now, 1, seq,
        clock, clock, int(rec["phenophase_id"]), int(rec["project_id"]),
        int(rec["taxon_id"]), user_id,
    )


def _sqlite_row(values: tuple[Any, ...]) -> tuple[Any, ...]:
    # Tortoise stores datetimes as str(datetime) and booleans as 0/1 in SQLite.
    return tuple(str(v) if isinstance(v, datetime) else (int(v) if isinstance(v, bool) else v)
                 for v in values)


_INSERT = (f'INSERT INTO observations ({", ".join(COLUMNS)}) '
           f'VALUES ({", ".join("?" for _ in COLUMNS)})')


def raw_sqlite_push(path: Path, world: World, records: list[dict[str, Any]]) -> float:
    """sqlite3.executemany of the same rows, 500 per transaction: rows/s."""
    user_id = world.users["pusher"][0]
    now = datetime.now(UTC)
    batches = [
        [_sqlite_row(row_values(r, user_id, 1000 + i + j, now))
         for j, r in enumerate(records[i:i + BATCH])]
        for i in range(0, len(records), BATCH)
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    start = time.perf_counter()
    for rows in batches:
        conn.execute("BEGIN")
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(records) / elapsed


# --- bulk rows for the latency figure ---------------------------------------------
def _bulk_rows(world: World, user_id: int, count: int, first_seq: int,
               seed: int) -> Iterator[list[tuple[Any, ...]]]:
    now = datetime.now(UTC)
    done = 0
    while done < count:
        n = min(50_000, count - done)
        recs = wire_records(world, n, seed + done)
        yield [row_values(r, user_id, first_seq + done + i, now) for i, r in enumerate(recs)]
        done += n


def bulk_insert(url: str, world: World, count: int, seed: int) -> int:
    """Write ``count`` observations of the bulk user straight into the database."""
    user_id = world.users["bulk"][0]
    if url.startswith("sqlite://"):
        conn = sqlite3.connect(url[len("sqlite://"):], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        last = conn.execute(
            "UPDATE sync_counter SET value = value + ? WHERE id = 1 RETURNING value", (count,)
        ).fetchone()[0]
        for rows in _bulk_rows(world, user_id, count, last - count + 1, seed):
            conn.executemany(_INSERT, [_sqlite_row(r) for r in rows])
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
        return int(last)
    return asyncio.run(_bulk_insert_pg(url, world, user_id, count, seed))


async def _bulk_insert_pg(url: str, world: World, user_id: int, count: int, seed: int) -> int:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        async with conn.transaction():
            last = await conn.fetchval(
                "UPDATE sync_counter SET value = value + $1 WHERE id = 1 RETURNING value", count
            )
            for rows in _bulk_rows(world, user_id, count, last - count + 1, seed):
                await conn.copy_records_to_table("observations", records=rows, columns=COLUMNS)
        await conn.execute("ANALYZE observations")
        return int(last)
    finally:
        await conn.close()


# --- servers ----------------------------------------------------------------------
def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn takes a socket passed by --fd for a Unix socket and so never sets
    # TCP_NODELAY on its connections, as it does when it binds host:port
    # (`phenosync serve`): every response written in two parts (headers, then
    # body) then waited for the client's delayed ACK, 40 ms a request.  Linux
    # gives accepted connections the listening socket's TCP_NODELAY.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _wait_ready(url: str, process: subprocess.Popen[bytes], path: str) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited at start")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


class Server:
    def __init__(self, args: list[str], env: dict[str, str] | None, cwd: Path | None,
                 health: str, pass_socket: bool) -> None:
        sock = _listening_socket()
        port = sock.getsockname()[1]
        if pass_socket:
            args = [*args, "--fd", str(sock.fileno())]
            fds: tuple[int, ...] = (sock.fileno(),)
        else:
            sock.close()  # pouchdb-server binds by number: a tiny window, loopback only
            args = [*args, "--port", str(port)]
            fds = ()
        self.process = subprocess.Popen(args, env=env, cwd=cwd, pass_fds=fds,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if pass_socket:
            sock.close()
        self.url = f"http://127.0.0.1:{port}"
        _wait_ready(self.url, self.process, health)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def phenosync_server(url: str, data_dir: Path) -> Server:
    env = {**os.environ, "PHENOSYNC_DATA_DIR": str(data_dir), "PHENOSYNC_DATABASE_URL": url,
           "PHENOSYNC_LOG_LEVEL": "warning"}
    return Server([sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app",
                   "--log-level", "warning", "--no-access-log"], env, ROOT, "/health", True)


def pouchdb_server(work: Path) -> Server:
    if not POUCHDB_SERVER.exists():
        sys.exit("pouchdb-server is not installed: run `make bench-deps` (npm ci in bench/node)")
    return Server([str(POUCHDB_SERVER), "--in-memory", "--host", "127.0.0.1",
                   "--no-stdout-logs"], None, work, "/", False)


# --- measurements -------------------------------------------------------------------
def push_phenosync(server: Server, token: str, records: list[dict[str, Any]]) -> float:
    bodies = [json.dumps({"changes": {"observations": {
        "created": records[i:i + BATCH], "updated": [], "deleted": []}}}).encode()
        for i in range(0, len(records), BATCH)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "X-Device-Id": "bench"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        start = time.perf_counter()
        for body in bodies:
            r = client.post("/api/v1/sync/push", content=body)
            assert r.status_code == 200 and r.json()["counts"]["applied"] == BATCH, r.text[:500]
        elapsed = time.perf_counter() - start
    return len(records) / elapsed


def pull_phenosync(server: Server, token: str, expected: int) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        cursor: int | None = None
        got = 0
        start = time.perf_counter()
        while True:
            params = {"schema_version": "1", "limit": str(PAGE)}
            if cursor is not None:
                params["last_pulled_at"] = str(cursor)
            body = client.get("/api/v1/sync/pull", params=params).json()
            got += len(body["changes"]["observations"]["created"])
            cursor = body["timestamp"]
            if not body["has_more"]:
                break
        elapsed = time.perf_counter() - start
    assert got == expected, (got, expected)
    return got / elapsed


def push_pouch(server: Server, records: list[dict[str, Any]]) -> float:
    bodies = [json.dumps({"docs": [{"_id": r["id"], **{k: v for k, v in r.items() if k != "id"}}
                                   for r in records[i:i + BATCH]]}).encode()
              for i in range(0, len(records), BATCH)]
    with httpx.Client(base_url=server.url, timeout=120,
                      headers={"Content-Type": "application/json"}) as client:
        assert client.put("/bench").status_code == 201
        start = time.perf_counter()
        for body in bodies:
            r = client.post("/bench/_bulk_docs", content=body)
            assert r.status_code == 201 and all("ok" in x for x in r.json()), r.text[:500]
        elapsed = time.perf_counter() - start
    return len(records) / elapsed


def pull_pouch(server: Server, expected: int) -> float:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        since: Any = 0
        got = 0
        start = time.perf_counter()
        while True:
            body = client.get("/bench/_changes", params={
                "include_docs": "true", "limit": str(PAGE), "since": str(since)}).json()
            got += len(body["results"])
            since = body["last_seq"]
            if len(body["results"]) < PAGE:
                break
        elapsed = time.perf_counter() - start
    assert got == expected, (got, expected)
    return got / elapsed


def page_latency(server: Server, token: str, cursor: int, repeats: int = 15) -> float:
    """Median seconds for one page of 500 observations pulled from ``cursor``."""
    headers = {"Authorization": f"Bearer {token}"}
    params = {"schema_version": "1", "limit": str(PAGE), "last_pulled_at": str(cursor)}
    times = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
        for i in range(repeats + 2):
            start = time.perf_counter()
            body = client.get("/api/v1/sync/pull", params=params).json()
            if i >= 2:  # two warm-ups
                times.append(time.perf_counter() - start)
            # (sync/pull.py ends a page one row early when it has more: PAGE - 1)
            assert len(body["changes"]["observations"]["created"]) >= PAGE - 1
    return statistics.median(times)


# --- one backend --------------------------------------------------------------------
def _pg_database(base: str) -> tuple[str, str]:
    name = f"phenosync_bench_{os.getpid()}_{secrets.token_hex(3)}"
    head, _, _ = base.rpartition("/")
    return name, f"{head}/{name}"


async def _pg_admin(base: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_backend(name: str, url: str, work: Path, args: argparse.Namespace,
                raw_rate: float, pouch: dict[str, float]) -> dict[str, float]:
    print(f"== {name} ==", flush=True)
    world = prepare(url)
    records = wire_records(world, args.push, seed=1)
    server = phenosync_server(url, work / f"data-{name}")
    try:
        push_rate = push_phenosync(server, world.users["pusher"][1], records)
        pull_rate = pull_phenosync(server, world.users["pusher"][1], len(records))
        token = world.users["bulk"][1]
        last = bulk_insert(url, world, args.small, seed=100)
        small = page_latency(server, token, last - 2000)
        last = bulk_insert(url, world, args.large - args.small, seed=200)
        large = page_latency(server, token, last - 2000)
    finally:
        server.stop()
    figures = {
        "push_raw": push_rate / raw_rate,
        "push_pouch": push_rate / pouch["push"],
        "pull_pouch": pull_rate / pouch["pull"],
        "latency": large / small,
    }
    report(name, push_rate, pull_rate, raw_rate, pouch, small, large, figures, args)
    return figures


def report(name: str, push_rate: float, pull_rate: float, raw_rate: float,
           pouch: dict[str, float], small: float, large: float, figures: dict[str, float],
           args: argparse.Namespace) -> None:
    def verdict(key: str) -> str:
        ok = figures[key] <= GOALS[key] if key == "latency" else figures[key] >= GOALS[key]
        return "meets goal" if ok else "MISSES goal"

    print(f"push   {push_rate:9.0f} obs/s vs raw sqlite3.executemany {raw_rate:9.0f} rows/s: "
          f"{figures['push_raw']:.2f}x (goal >= {GOALS['push_raw']}x) {verdict('push_raw')}")
    print(f"push   {push_rate:9.0f} obs/s vs pouchdb-server _bulk_docs {pouch['push']:7.0f} "
          f"docs/s: {figures['push_pouch']:.2f}x (goal >= {GOALS['push_pouch']}x) "
          f"{verdict('push_pouch')}")
    print(f"pull   {pull_rate:9.0f} obs/s vs pouchdb-server _changes {pouch['pull']:9.0f} "
          f"docs/s: {figures['pull_pouch']:.2f}x (goal >= {GOALS['pull_pouch']}x) "
          f"{verdict('pull_pouch')}")
    print(f"page   {large * 1000:7.1f} ms with {args.large:,} stored vs "
          f"{small * 1000:.1f} ms with {args.small:,}: {figures['latency']:.2f}x "
          f"(goal <= {GOALS['latency']}x) {verdict('latency')}", flush=True)


def measure_peers(work: Path, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """raw sqlite3.executemany rows/s, and pouchdb-server push and pull docs/s."""
    work.mkdir()
    world = prepare(f"sqlite://{work / 'raw.sqlite3'}", ("pusher",))
    records = wire_records(world, args.push, seed=1)
    raw_rate = raw_sqlite_push(work / "raw.sqlite3", world, records)
    pouch_dir = work / "pouch"
    pouch_dir.mkdir()
    peer = pouchdb_server(pouch_dir)
    try:
        pouch = {"push": push_pouch(peer, records), "pull": pull_pouch(peer, len(records))}
    finally:
        peer.stop()
    print(f"\npeers: raw sqlite3 {raw_rate:.0f} rows/s, pouchdb-server push "
          f"{pouch['push']:.0f} docs/s, pull {pouch['pull']:.0f} docs/s", flush=True)
    return raw_rate, pouch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--push", type=int, default=20_000, help="observations pushed/pulled")
    parser.add_argument("--small", type=int, default=10_000, help="stored rows, small case")
    parser.add_argument("--large", type=int, default=1_000_000, help="stored rows, large case")
    parser.add_argument("--quick", action="store_true", help="--push 5000 --large 100000")
    args = parser.parse_args()
    if args.quick:
        args.push, args.large = 5000, 100_000
    args.push -= args.push % BATCH
    assert args.push >= BATCH and args.large > args.small >= 2500

    pg_base = (os.environ.get("PHENOSYNC_BENCH_POSTGRES_URL")
               or os.environ.get("PHENOSYNC_TEST_POSTGRES_URL"))
    work = Path(tempfile.mkdtemp(prefix="phenosync-bench-"))
    try:
        print(f"sync benchmark: {args.push:,} observations in batches of {BATCH}, pages of "
              f"{PAGE}; latency at {args.small:,} and {args.large:,} stored", flush=True)
        # The peers, measured with the same documents just before each
        # backend (not once for both: the machine's load moves in minutes).
        raw_rate, pouch = measure_peers(work / "sqlite", args)
        run_backend("sqlite", f"sqlite://{work / 'phenosync.sqlite3'}", work, args,
                    raw_rate, pouch)
        if pg_base:
            name, url = _pg_database(pg_base)
            asyncio.run(_pg_admin(pg_base, f'CREATE DATABASE "{name}"'))
            try:
                raw_rate, pouch = measure_peers(work / "postgres", args)
                run_backend("postgres", url, work, args, raw_rate, pouch)
            finally:
                asyncio.run(_pg_admin(pg_base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            print("\n(postgres skipped: set PHENOSYNC_BENCH_POSTGRES_URL)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
