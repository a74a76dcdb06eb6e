"""Load benchmark (issue #7, part 2): many devices syncing at once, nothing lost.

200 simulated devices (the reference client, ``sync/client.py``; 150 users,
50 of them with a second device) sync against a real server in a child
process on a loopback port, all at once, for several minutes.  Each device
loops: a random pause (exponential, mean ``--think`` s), then one action:

- push (45 %): 1-20 new observations, sometimes with edits and a delete of
  its own earlier records, then a sync (pull, then push);
- pull (35 %): a sync with nothing to push;
- photo (20 %): a photo record for one of its observations, a sync, then the
  file over tus (a small real JPEG made here, unique per upload), half with
  creation-with-upload, half with creation and PATCHes of 32 KiB.

Backends: (a) the embedded default, ``phenosync serve`` on SQLite with media
on disk (one process); (b) PostgreSQL, ``phenosync serve --workers 4``.

At the end every device syncs until nothing moves, and the run checks:

- zero errors: every HTTP answer was 2xx (retries are counted, not hidden),
  no transport error, no rejected record, no exception in a device;
- zero lost records: every observation a device had acknowledged (left its
  outbox after a sync) is on the server exactly once, with its last
  acknowledged content, and nothing else is (a first pull per user, and the
  database read directly after the server stopped); every device holds
  exactly its user's server view; every completed upload's photo becomes
  ``ready`` and its original is byte-identical;
- the server log has no "database is locked", no traceback, no 5xx.

Figures: per endpoint, requests/s and p50/p95/p99 latency (client side,
while the devices run).  The zero-figures print as ratios: errors/requests
and lost/acknowledged, each against the limit 0.

Run: ``.venv/bin/python bench/load_bench.py`` (both backends, 5 minutes each,
PostgreSQL when ``PHENOSYNC_BENCH_POSTGRES_URL`` or
``PHENOSYNC_TEST_POSTGRES_URL`` is set; a throw-away database is created
next to the one named and dropped after).  ``--quick`` runs 45 s; ``--report``
writes ``bench/load_report.md``.  Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import os
import platform
import random
import re
import secrets
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.server_process import ServerProcess  # noqa: E402
from sync.client import RetryPolicy, SyncClient  # noqa: E402

API = "/api/v1"
PULL = f"GET {API}/sync/pull"
PUSH = f"POST {API}/sync/push"
TUS_CREATE = f"POST {API}/uploads/"
TUS_PATCH = f"PATCH {API}/uploads/{{id}}"
ENDPOINT_ORDER = (PULL, PUSH, TUS_CREATE, TUS_PATCH)
PATCH_CHUNK = 32 * 1024
LOCKED = re.compile(r"database is locked|database table is locked", re.IGNORECASE)


# --- configuration -----------------------------------------------------------------

@dataclass(frozen=True)
class LoadConfig:
    devices: int = 200
    users: int = 150  # devices beyond this are second devices of the first users
    duration: float = 300.0  # seconds of load, after the first sync of every device
    think: float = 3.0  # mean pause of a device between actions (s)
    seed: int = 7
    workers: int = 1  # server processes (uvicorn workers)


# --- measuring ------------------------------------------------------------------

@dataclass
class Recorder:
    """Latency per endpoint while ``measuring``; every failure, always."""

    measuring: bool = False
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        if len(self.errors) < 10_000:
            self.errors.append(what)

    def record(self, endpoint: str, status: int, seconds: float, detail: str) -> None:
        self.requests[endpoint] += 1
        if self.measuring:
            self.latencies[endpoint].append(seconds)
        if not 200 <= status < 300:
            self.error(f"{endpoint}: HTTP {status} {detail[:300]}")


def endpoint_label(request: httpx.Request) -> str:
    path = request.url.path
    if path.startswith(f"{API}/uploads/") and path != f"{API}/uploads/":
        path = f"{API}/uploads/{{id}}"
    return f"{request.method} {path}"


# One TLS context for every device (plain HTTP on loopback, but httpx builds a
# context per transport otherwise: 400 certificate-store loads at start).
_TLS = ssl.create_default_context()


class TimedTransport(httpx.AsyncBaseTransport):
    """A device's network: times each request to its last body byte, records failures."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.inner = httpx.AsyncHTTPTransport(retries=0, verify=_TLS)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        label = endpoint_label(request)
        start = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
            body = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
        except httpx.TransportError as exc:
            self.recorder.error(f"{label}: {type(exc).__name__} {exc}")
            raise
        detail = "" if response.status_code < 300 else body.decode(errors="replace")
        self.recorder.record(label, response.status_code, time.perf_counter() - start, detail)
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              request=request, extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- the world: users, tokens, reference data ------------------------------------

@dataclass(frozen=True)
class DeviceSpec:
    user_id: int
    token: str


@dataclass(frozen=True)
class World:
    project_id: str
    pairs: tuple[tuple[str, str], ...]  # (taxon id, phenophase id) valid together
    devices: tuple[DeviceSpec, ...]


@contextmanager
def fresh_executor_cache() -> Iterator[None]:
    """Tortoise caches INSERT statements by connection name, not dialect: a process
    that talks to SQLite and PostgreSQL (the test suite) must not share them."""
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    saved = dict(EXECUTOR_CACHE)
    EXECUTOR_CACHE.clear()
    try:
        yield
    finally:
        EXECUTOR_CACHE.clear()
        EXECUTOR_CACHE.update(saved)


async def prepare(env: dict[str, str], config: LoadConfig) -> World:
    """Migrate the empty database of ``env`` and fill it: vocabulary, one project,
    the users (volunteers of the project) and a token per device."""
    from server.database import Database
    from server.models.accounts import User
    from server.settings import Settings
    from server.tokens import issue
    from tests.factories import make_user
    from tests.factories_sync import make_world

    settings = Settings.from_env(env)
    database = Database(settings.database_url)
    await database.open()
    try:
        with database.context, fresh_executor_cache():
            await database.migrate()
            world = await make_world()
            users = [(await make_user("volunteer", project=world.project))
                     for _ in range(min(config.users, config.devices))]
            specs = [DeviceSpec(u.id, t) for u, t in users]
            for n in range(config.devices - len(users)):
                user = await User.get(id=users[n % len(users)][0].id)
                token, _ = await issue(user, name="second device")
                specs.append(DeviceSpec(user.id, token))
            return World(
                project_id=str(world.project.id),
                pairs=((str(world.hazel.id), str(world.open_flowers.id)),
                       (str(world.oak.id), str(world.leaves.id)),
                       (str(world.swallow.id), str(world.singing.id))),
                devices=tuple(specs),
            )
    finally:
        await database.close()


async def stored_state(env: dict[str, str]) -> tuple[dict[str, tuple[int, str]], dict[str, Any]]:
    """Read the database directly: live observation id -> (user id, notes), and
    photo id -> (upload state, sha256)."""
    from server.database import Database
    from server.models.observations import Observation, Photo
    from server.settings import Settings

    settings = Settings.from_env(env)
    database = Database(settings.database_url)
    await database.open()
    try:
        with database.context, fresh_executor_cache():
            rows = await Observation.filter(is_deleted=False).values_list("id", "user_id", "notes")
            photos = await Photo.filter(is_deleted=False).values_list(
                "id", "upload_state", "sha256")
    finally:
        await database.close()
    observations: dict[str, tuple[int, str]] = {}
    for rid, user_id, notes in rows:
        if rid in observations:
            raise AssertionError(f"observation {rid} is stored twice")
        observations[rid] = (user_id, notes)
    return observations, {p: (str(s), h) for p, s, h in photos}


# --- photos ------------------------------------------------------------------------

def small_jpeg(rng: random.Random) -> bytes:
    """A real JPEG of 320-800 px, different every time (20-90 KB)."""
    w, h = rng.randrange(320, 801), rng.randrange(240, 601)
    image = Image.new("RGB", (w, h), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(10, 120)
        draw.ellipse((x - r, y - r, x + r, y + r),
                     fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw.text((10, 10), secrets.token_hex(8), fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def tus_metadata(values: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


# --- a device ----------------------------------------------------------------------

class Device:
    """One phone: the reference client, and what it knows it has been told."""

    def __init__(self, n: int, spec: DeviceSpec, world: World, base_url: str,
                 recorder: Recorder, seed: int, think: float) -> None:
        self.n = n
        self.think = think
        self.spec = spec
        self.world = world
        self.recorder = recorder
        self.rng = random.Random(seed * 100_003 + n)
        self.client = SyncClient(
            base_url, spec.token, transport=TimedTransport(recorder),
            retry=RetryPolicy(attempts=6, base_delay=0.25, max_delay=5.0),
            rng=random.Random(n), device_id=f"load-{n:03d}", timeout=60.0,
        )
        self.tus = httpx.AsyncClient(
            base_url=base_url, transport=TimedTransport(recorder), timeout=60.0,
            headers={"Authorization": f"Bearer {spec.token}", "Tus-Resumable": "1.0.0"},
        )
        self.live: dict[str, str] = {}  # observations made here and not deleted: id -> notes
        self.deleted: set[str] = set()
        self.touched: set[str] = set()  # changed here since their last acknowledgement
        self.acked: dict[str, str] = {}  # acknowledged by the server: id -> notes
        self.acked_deleted: set[str] = set()
        self.with_photo: set[str] = set()
        self.uploads: dict[str, str] = {}  # photo id -> sha256 of a completed upload
        self.actions: Counter[str] = Counter()

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()
        await self.tus.aclose()

    # --- actions ----------------------------------------------------------------
    async def act(self) -> None:
        roll = self.rng.random()
        if roll < 0.45:
            await self.push()
        elif roll < 0.80:
            self.actions["pull"] += 1
            await self.sync()
        else:
            await self.photo()

    def _observation(self) -> dict[str, Any]:
        rng = self.rng
        taxon, phenophase = rng.choice(self.world.pairs)
        when = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(60 * 24 * 60))
        return {
            "project_id": self.world.project_id,
            "taxon_id": taxon,
            "phenophase_id": phenophase,
            "status": rng.choice(("yes", "yes", "no", "unknown")),
            "observed_at": when.strftime("%Y-%m-%dT%H:%M:%S+01:00"),
            "latitude": round(rng.uniform(51.0, 53.3), 5),
            "longitude": round(rng.uniform(3.6, 7.0), 5),
            "coordinate_uncertainty_m": rng.choice((5, 10, 25, 100)),
            "geoprivacy": rng.choice(("open", "open", "open", "obscured", "private")),
            "notes": f"device {self.n} note {secrets.token_hex(4)}",
            "license": "CC-BY-4.0",
        }

    async def push(self) -> None:
        self.actions["push"] += 1
        for _ in range(self.rng.randint(1, 20)):
            values = self._observation()
            rid = await self.client.record("observations", values)
            self.live[rid] = values["notes"]
            self.touched.add(rid)
        editable = sorted(rid for rid in self.acked if rid in self.live)
        if editable and self.rng.random() < 0.4:
            for rid in self.rng.sample(editable, min(len(editable), self.rng.randint(1, 3))):
                notes = f"edited on device {self.n} {secrets.token_hex(4)}"
                await self.client.update("observations", rid, {"notes": notes,
                                         "status": self.rng.choice(("yes", "no"))})
                self.live[rid] = notes
                self.touched.add(rid)
        deletable = [rid for rid in editable if rid not in self.with_photo and rid in self.live]
        if deletable and self.rng.random() < 0.2:
            rid = self.rng.choice(deletable)
            await self.client.delete("observations", rid)
            del self.live[rid]
            self.deleted.add(rid)
            self.touched.add(rid)
        await self.sync()

    async def photo(self) -> None:
        candidates = sorted(rid for rid in self.acked
                            if rid in self.live and rid not in self.touched)
        if not candidates:
            await self.push()
            return
        self.actions["photo"] += 1
        observation_id = self.rng.choice(candidates)
        self.with_photo.add(observation_id)
        data = small_jpeg(self.rng)
        sha = hashlib.sha256(data).hexdigest()
        photo_id = await self.client.record(
            "photos", {"observation_id": observation_id, "sha256": sha, "license": "CC-BY-4.0"})
        await self.sync()
        if photo_id in {rid for _t, rid, _s in await self.client.outbox()}:
            self.recorder.error(f"device {self.n}: photo record {photo_id} not acknowledged")
            return
        if await self.upload(photo_id, data, sha):
            self.uploads[photo_id] = sha

    async def upload(self, photo_id: str, data: bytes, sha: str) -> bool:
        headers = {
            "Upload-Length": str(len(data)),
            "Upload-Metadata": tus_metadata({"photo_id": photo_id, "filetype": "image/jpeg",
                                             "filename": f"IMG_{self.n}.jpg", "sha256": sha}),
        }
        octet = {"Content-Type": "application/offset+octet-stream"}
        if self.rng.random() < 0.5:  # creation-with-upload: one request
            r = await self.tus.post(f"{API}/uploads/", headers={**headers, **octet}, content=data)
            return r.status_code == 201 and r.headers.get("upload-offset") == str(len(data))
        r = await self.tus.post(f"{API}/uploads/", headers=headers)
        if r.status_code != 201:
            return False
        location = r.headers["location"]
        offset = 0
        while offset < len(data):
            chunk = data[offset:offset + PATCH_CHUNK]
            r = await self.tus.patch(location, headers={**octet, "Upload-Offset": str(offset)},
                                     content=chunk)
            if r.status_code != 204:
                return False
            offset = int(r.headers["upload-offset"])
        return offset == len(data)

    async def sync(self) -> None:
        await self.client.sync()
        outbox = {rid for _t, rid, _s in await self.client.outbox()}
        for rid in list(self.touched):
            if rid in outbox:
                continue
            self.touched.discard(rid)
            if rid in self.deleted:
                self.acked.pop(rid, None)
                self.acked_deleted.add(rid)
            else:
                self.acked[rid] = self.live[rid]
        for rejected in await self.client.rejections():
            self.recorder.error(f"device {self.n}: rejected {rejected}")

    async def run(self, until: float) -> None:
        while True:
            pause = self.rng.expovariate(1.0 / self.think)
            if time.monotonic() + pause >= until:
                return
            await asyncio.sleep(pause)
            await self.safely(self.act)

    async def safely(self, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except Exception as exc:  # counted as an error, and the device goes on
            self.recorder.error(f"device {self.n}: {type(exc).__name__}: {exc}")


# --- checks ------------------------------------------------------------------------

async def first_pull(base_url: str, token: str) -> dict[str, list[dict[str, Any]]]:
    """Every page of a first pull, records listed as sent (duplicates kept)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    cursor: int | None = None
    async with httpx.AsyncClient(base_url=base_url, timeout=60, verify=_TLS,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        while True:
            params = {"schema_version": "1", "limit": "500"}
            if cursor is not None:
                params["last_pulled_at"] = str(cursor)
            r = await http.get(f"{API}/sync/pull", params=params)
            r.raise_for_status()
            body = r.json()
            for table, section in body["changes"].items():
                out[table].extend([*section["created"], *section["updated"]])
            cursor = body["timestamp"]
            if not body["has_more"]:
                return out


async def gather_limited(jobs: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs))


@dataclass
class Outcome:
    backend: str
    config: LoadConfig
    seconds: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # lost or wrong data, bad log lines
    acknowledged: int = 0
    deleted: int = 0
    photos: int = 0
    lost: int = 0
    actions: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.failures


async def verify(devices: list[Device], base_url: str, outcome: Outcome,
                 photo_timeout: float) -> dict[str, str]:
    """The live checks, while the server runs; returns photo id -> sha256 expected."""
    expected: dict[int, dict[str, str]] = defaultdict(dict)
    gone: set[str] = set()
    for d in devices:
        if d.touched:
            outcome.failures.append(f"device {d.n}: {len(d.touched)} changes never acknowledged")
        expected[d.spec.user_id].update(d.acked)
        gone |= d.acked_deleted
    outcome.acknowledged = sum(len(v) for v in expected.values()) + len(gone)
    outcome.deleted = len(gone)
    tokens = {d.spec.user_id: d.spec.token for d in devices}
    views = dict(zip(tokens, await gather_limited(
        [lambda t=t: first_pull(base_url, t) for t in tokens.values()], 20), strict=True))
    for user_id, view in views.items():
        rows = view["observations"]
        ids = [r["id"] for r in rows]
        if len(ids) != len(set(ids)):
            outcome.failures.append(f"user {user_id}: a record pulled twice in a first pull")
        got = {r["id"]: r["notes"] for r in rows}
        want = expected[user_id]
        missing = set(want) - set(got)
        outcome.lost += len(missing)
        if missing:
            outcome.failures.append(f"user {user_id}: {len(missing)} acknowledged records lost")
        extra = set(got) - set(want)
        if extra:
            outcome.failures.append(f"user {user_id}: {len(extra)} records never acknowledged "
                                    f"(deleted ones among them: {len(extra & gone)})")
        stale = [rid for rid in set(got) & set(want) if got[rid] != want[rid]]
        if stale:
            outcome.failures.append(f"user {user_id}: {len(stale)} records with an old edit")
    for d in devices:
        view = views[d.spec.user_id]
        for table in ("observations", "photos"):
            local = {r["id"] for r in await d.client.records(table)}
            server = {r["id"] for r in view[table]}
            if local != server:
                outcome.failures.append(f"device {d.n}: {table} differ from the server's "
                                        f"({len(local ^ server)} ids)")
    uploads = {pid: sha for d in devices for pid, sha in d.uploads.items()}
    tokens_of = {pid: d.spec.token for d in devices for pid in d.uploads}
    outcome.photos = len(uploads)
    deadline = time.monotonic() + photo_timeout

    async def check_photo(photo_id: str) -> str | None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60, verify=_TLS, headers={
                "Authorization": f"Bearer {tokens_of[photo_id]}"}) as http:
            while True:
                r = await http.get(f"{API}/photos/{photo_id}")
                state = r.json().get("upload_state") if r.status_code == 200 else r.status_code
                if state == "ready":
                    break
                if state != "processing" or time.monotonic() > deadline:
                    return f"photo {photo_id}: {state}"
                await asyncio.sleep(0.5)
            r = await http.get(f"{API}/photos/{photo_id}/original")
            if r.status_code != 200 or hashlib.sha256(r.content).hexdigest() != uploads[photo_id]:
                return f"photo {photo_id}: original differs (HTTP {r.status_code})"
        return None

    problems = await gather_limited([lambda p=p: check_photo(p) for p in uploads], 10)
    outcome.failures.extend(p for p in problems if p)
    return uploads


def check_log(text: str, outcome: Outcome) -> None:
    locked = LOCKED.findall(text)
    if locked:
        outcome.failures.append(f"server log: 'database is locked' {len(locked)} times")
    if "Traceback" in text:
        outcome.failures.append(f"server log: {text.count('Traceback')} tracebacks")
    server_errors = 0
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if int(entry.get("status") or 0) >= 500 or entry.get("level") in ("error", "critical"):
            server_errors += 1
    if server_errors:
        outcome.failures.append(f"server log: {server_errors} error entries or 5xx answers")


# --- a run ----------------------------------------------------------------------------

def timed_progress(message: str, _start: list[float] = []) -> None:  # noqa: B006
    _start.append(_start[0] if _start else time.monotonic())
    print(f"{time.monotonic() - _start[0]:6.1f} s  {message}", flush=True)


async def run_load(backend: str, database_url: str | None, config: LoadConfig,
                   workdir: Path, *, progress: Callable[[str], None] = timed_progress,
                   photo_timeout: float = 120.0) -> Outcome:
    """One backend: prepare, serve, load, drain, verify.  ``database_url`` None is
    the embedded default (SQLite in the data dir)."""
    data_dir = workdir / "data"
    env = {
        "PHENOSYNC_DATA_DIR": str(data_dir),
        "PHENOSYNC_LOG_LEVEL": "info",
        "PHENOSYNC_LOG_JSON": "true",
    }
    if database_url is not None:
        env["PHENOSYNC_DATABASE_URL"] = database_url
    if config.workers > 1:
        metrics = workdir / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    outcome = Outcome(backend, config)
    recorder = Recorder()
    progress(f"[{backend}] preparing {config.users} users, {config.devices} devices")
    world = await prepare(env, config)
    server = ServerProcess(env, workdir / "server.log", workers=config.workers)
    progress(f"[{backend}] starting the server ({config.workers} process(es))")
    await asyncio.to_thread(server.start)
    devices: list[Device] = []
    try:
        devices = [Device(n, spec, world, server.base_url, recorder, config.seed, config.think)
                   for n, spec in enumerate(world.devices)]
        for d in devices:
            await d.open()
        progress(f"[{backend}] {len(devices)} devices: first sync, all at once")
        await asyncio.gather(*(d.safely(d.sync) for d in devices))
        progress(f"[{backend}] load for {config.duration:.0f} s")
        recorder.measuring = True
        start = time.monotonic()
        await asyncio.gather(*(d.run(start + config.duration) for d in devices))
        outcome.seconds = time.monotonic() - start
        recorder.measuring = False
        progress(f"[{backend}] drain: every device syncs until nothing moves")
        for _ in range(6):
            before = sum(len(d.touched) for d in devices)
            await gather_limited([lambda d=d: d.safely(d.sync) for d in devices], 50)
            if before == 0:
                break  # a whole round with nothing to push: every device has all
        progress(f"[{backend}] verifying")
        await verify(devices, server.base_url, outcome, photo_timeout)
    finally:
        for d in devices:
            await d.close()
        status = await asyncio.to_thread(server.stop)
        if status not in (0, -15, None):  # uvicorn re-raises the SIGTERM it handled
            outcome.failures.append(f"server exited with status {status}")
    check_log(server.log_text(), outcome)
    stored, photos = await stored_state(env)
    expected = {rid: (d.spec.user_id, notes) for d in devices for rid, notes in d.acked.items()}
    if stored != expected:
        lost = set(expected) - set(stored)
        outcome.failures.append(
            f"database: {len(lost)} acknowledged records missing, "
            f"{len(set(stored) - set(expected))} unexpected, "
            f"{sum(1 for k in set(stored) & set(expected) if stored[k] != expected[k])} differ")
        outcome.lost = max(outcome.lost, len(lost))
    for d in devices:
        for pid, sha in d.uploads.items():
            if photos.get(pid) != ("ready", sha):
                outcome.failures.append(f"database: photo {pid} is {photos.get(pid)}")
    outcome.requests = recorder.requests
    outcome.latencies = dict(recorder.latencies)
    outcome.errors = recorder.errors
    for d in devices:
        outcome.actions.update(d.actions)
    return outcome


# --- PostgreSQL: a throw-away database next to the one named ------------------------

async def create_database(url: str) -> str:
    import asyncpg

    base, _, _ = url.rpartition("/")
    name = f"phenosync_loadbench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{base}/{name}"


async def drop_database(admin_url: str, url: str) -> None:
    import asyncpg

    name = url.rpartition("/")[2]
    admin = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# --- the report -----------------------------------------------------------------------

def table(outcome: Outcome) -> list[str]:
    rows = ["| endpoint | requests | req/s | p50 ms | p95 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    names = [e for e in ENDPOINT_ORDER if e in outcome.latencies]
    names += sorted(set(outcome.latencies) - set(names))
    total = 0
    for name in names:
        values = outcome.latencies[name]
        total += len(values)
        rows.append(
            f"| `{name}` | {len(values)} | {len(values) / outcome.seconds:.1f} | "
            f"{percentile(values, 0.5) * 1000:.0f} | {percentile(values, 0.95) * 1000:.0f} | "
            f"{percentile(values, 0.99) * 1000:.0f} | {max(values) * 1000:.0f} |")
    rows.append(f"| all | {total} | {total / outcome.seconds:.1f} | | | | |")
    return rows


def summary(outcome: Outcome) -> list[str]:
    requests = sum(outcome.requests.values())
    acked = max(outcome.acknowledged, 1)
    lines = [
        f"- devices {outcome.config.devices} ({outcome.config.users} users), server processes "
        f"{outcome.config.workers}, {outcome.seconds:.0f} s of load, mean pause "
        f"{outcome.config.think:g} s; actions: " + ", ".join(
            f"{k} {v}" for k, v in sorted(outcome.actions.items())),
        f"- errors: {len(outcome.errors)} of {requests} requests "
        f"(ratio {len(outcome.errors) / max(requests, 1):.4f}; limit 0)",
        f"- lost: {outcome.lost} of {outcome.acknowledged} acknowledged records "
        f"(ratio {outcome.lost / acked:.4f}; limit 0); {outcome.deleted} acknowledged deletes "
        f"stay deleted; {outcome.photos} completed uploads, each ready and byte-identical",
        f"- checks: {'PASS' if outcome.ok else 'FAIL'}",
    ]
    lines += [f"  - error: {e}" for e in outcome.errors[:10]]
    lines += [f"  - failure: {f}" for f in outcome.failures[:20]]
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{mem}, "
            f"Python {platform.python_version()}")


def report(outcomes: list[Outcome], command: str) -> str:
    lines = [
        "# Load benchmark report",
        "",
        "Written by `bench/load_bench.py --report` (issue #7, part 2); the method is in",
        "that file's docstring. Latencies are measured by the devices (request sent to",
        "last byte received), while the devices run; the client (200 devices in one",
        "Python process) shares the machine with the server.",
        "",
        f"- command: `{command}`",
        f"- machine: {machine()}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
    ]
    titles = {"sqlite": "(a) Embedded default: SQLite, media on disk, one process",
              "postgres": "(b) PostgreSQL, 4 uvicorn workers"}
    for o in outcomes:
        lines += [f"## {titles.get(o.backend, o.backend)}", "", *table(o), "", *summary(o), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--quick", action="store_true", help="45 s per backend")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--think", type=float, default=3.0, help="mean pause between actions")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-workers", type=int, default=4)
    parser.add_argument("--report", action="store_true", help="write bench/load_report.md")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args()
    duration = 45.0 if args.quick else args.duration
    pg_url = (os.environ.get("PHENOSYNC_BENCH_POSTGRES_URL")
              or os.environ.get("PHENOSYNC_TEST_POSTGRES_URL") or "")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not pg_url:
        if args.backend == "postgres":
            parser.error("set PHENOSYNC_BENCH_POSTGRES_URL for the PostgreSQL run")
        print("PostgreSQL skipped: PHENOSYNC_BENCH_POSTGRES_URL is not set")
        backends.remove("postgres")
    outcomes = []
    for backend in backends:
        config = LoadConfig(devices=args.devices, users=args.users, duration=duration,
                            think=args.think,
                            workers=args.postgres_workers if backend == "postgres" else 1)
        workdir = Path(tempfile.mkdtemp(prefix=f"phenosync-load-{backend}-"))
        url = asyncio.run(create_database(pg_url)) if backend == "postgres" else None
        try:
            outcome = asyncio.run(run_load(backend, url, config, workdir))
        finally:
            if url is not None:
                asyncio.run(drop_database(pg_url, url))
            if args.keep or "outcome" not in locals() or not outcome.ok:
                print(f"[{backend}] work dir kept: {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        outcomes.append(outcome)
        print("\n".join(["", *table(outcome), "", *summary(outcome), ""]))
    command = "python bench/load_bench.py " + " ".join(sys.argv[1:])
    if args.report:
        path = ROOT / "bench" / "load_report.md"
        path.write_text(report(outcomes, command.strip()) + "\n")
        print(f"wrote {path}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
