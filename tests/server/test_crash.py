"""Crash safety (issue #7, part 1): the real server, killed with SIGKILL at
random moments while devices push, upload photos, photos are processed,
reviewers decide and coordinators publish; 50 times per backend.

The server runs as child processes (``tests/servers.py``): one process on
SQLite, the embedded default; two worker processes on PostgreSQL.  The clients
run in this process and talk HTTP to it: the reference sync client
(``sync/client.py``) for volunteers' devices, tus over HTTP for photo bytes,
the review API for an expert, the datasets API for a coordinator.  Each
client writes down what the server *acknowledged* (a 2xx it acted on).

The kill moments come from a seeded generator.  After each kill the server is
started again on the same database, data dir and port, and before the clients
go on this checks that

- every observation a device marked synced is stored, and no push batch is
  half applied (the records a device created in one round are all there or
  none);
- every photo byte a tus response acknowledged is stored (the upload's offset
  covers it and the file holds exactly those bytes); a ready photo has its
  original and derivatives, a completed upload waiting for processing has its
  whole file;
- every acknowledged review decision is stored and settled the record;
- every acknowledged release is listed and complete, and no folder under
  ``releases/`` is partial (each one's SHA256SUMS matches its files);
- no background job has failed.

After the last kill the clients retry until everything is clean: devices sync
to quiescence, every photo is uploaded and processed (jobs cut off by a kill
run again when their lease runs out), one more release is published.  Then
the server's observations equal the union of the devices' (zero lost, zero
duplicates), and each device's data equals what the server would send it.
The counts are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image
from starlette.applications import Starlette

from schemas.observation import UploadState
from server.models.jobs import Job, JobState
from server.models.observations import Observation, Photo
from server.models.releases import Release
from server.models.review import ReviewDecision
from server.models.uploads import Upload, UploadStatus
from server.releases import JOB_KIND as RELEASE_JOB
from server.settings import Settings
from sync.client import RetryPolicy, SyncClient, SyncError
from tests.factories import auth, make_user
from tests.factories_sync import World, make_world
from tests.factories_syncclient import TABLE_NAMES, new_observation, server_view
from tests.servers import ServerProcess

KILLS = int(os.environ.get("PHENOSYNC_TEST_CRASH_KILLS", "50"))
SEED = 20260701
WORKERS = {"sqlite": 1, "postgres": 2}
DEVICES = 3
CHUNK = 16 * 1024
OBS = "observations"
TUS = {"Tus-Resumable": "1.0.0"}
# A request to a dead server fails at once (connection refused): retry little.
RETRY = RetryPolicy(attempts=2, base_delay=0.02, max_delay=0.05)


def photo_bytes(seed: int) -> bytes:
    """A noisy JPEG (about 60 KB: several tus chunks)."""
    rng = random.Random(seed)
    image = Image.effect_noise((360, 270), 40 + rng.randrange(40)).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class PhotoFile:
    photo_id: str
    data: bytes
    upload_id: str | None = None
    acked: int = 0  # the largest Upload-Offset a response confirmed
    done: bool = False  # the server confirmed the last byte (or that it has the file)


@dataclass
class Ledger:
    """What the server acknowledged, and what it cost."""

    uploads: dict[str, PhotoFile] = field(default_factory=dict)  # upload id -> file
    decisions: dict[str, str] = field(default_factory=dict)  # observation id -> decision
    releases: set[str] = field(default_factory=set)  # versions reported done
    publish_jobs: dict[int, str] = field(default_factory=dict)  # queued (202) -> version
    retries: Counter[str] = field(default_factory=Counter)  # failed attempts, per client
    verified: Counter[str] = field(default_factory=Counter)  # checks passed, per kind


@dataclass
class Volunteer:
    user_id: int
    token: str
    client: SyncClient
    http: httpx.AsyncClient
    rounds: dict[str, int] = field(default_factory=dict)  # round tag -> observations in it
    created: set[str] = field(default_factory=set)
    photos: dict[str, PhotoFile] = field(default_factory=dict)  # photo id -> file


async def test_kill_the_server_fifty_times(
    db: Starlette, settings: Settings, backend: str, tmp_path: Path
) -> None:
    world = await make_world()
    users = [await make_user(project=world.project) for _ in range(DEVICES)]
    expert, expert_token = await make_user("expert", project=world.project)
    _, coordinator_token = await make_user("coordinator")
    data_dir = tmp_path / "data"
    server = ServerProcess({
        "PHENOSYNC_DATA_DIR": str(data_dir),
        "PHENOSYNC_DATABASE_URL": settings.database_url,
        "PHENOSYNC_SECRET_KEY": str(settings.secret_key),
        "PHENOSYNC_JOB_WORKERS": "1",
        "PHENOSYNC_JOB_LEASE_SECONDS": "3",
        "PHENOSYNC_RATE_LIMIT_PER_MINUTE": "1000000",
        "PHENOSYNC_LOG_LEVEL": "warning",
    }, workers=WORKERS[backend], log=tmp_path / "server.log")
    rng = random.Random(SEED)
    ledger = Ledger()
    volunteers: list[Volunteer] = []
    reviewer = httpx.AsyncClient(base_url=server.base, headers=auth(expert_token), timeout=20)
    coordinator = httpx.AsyncClient(base_url=server.base, headers=auth(coordinator_token),
                                    timeout=60)
    try:
        for n, (user, token) in enumerate(users):
            client = SyncClient(server.base, token, database=tmp_path / f"device{n}.sqlite3",
                                device_id=f"device{n}", retry=RETRY, rng=random.Random(n),
                                timeout=20)
            await client.open()
            http = httpx.AsyncClient(base_url=server.base, headers=auth(token), timeout=20)
            volunteers.append(Volunteer(user.id, token, client, http))
        started = time.monotonic()
        for kill in range(KILLS):
            await asyncio.to_thread(server.start)
            stop = asyncio.Event()
            tasks = [
                *(asyncio.create_task(volunteer_works(v, world, stop, ledger, seed=kill * 10 + i))
                  for i, v in enumerate(volunteers)),
                asyncio.create_task(expert_decides(reviewer, world, stop, ledger)),
                asyncio.create_task(coordinator_publishes(coordinator, stop, ledger,
                                                          delay=rng.uniform(0, 1.5))),
            ]
            # Mostly short runs; every fifth a longer one, so that publishes
            # (a new process loads pyarrow first) also finish between kills.
            await asyncio.sleep(rng.uniform(3.0, 5.0) if kill % 5 == 4 else rng.uniform(0.3, 2.0))
            if kill % 5 == 4:
                await publishes_done()
            server.kill()
            stop.set()
            await asyncio.gather(*tasks)
            # What any restart starts from (checked while nothing runs: no races).
            await check_after_restart(volunteers, ledger, data_dir)
        crash_seconds = time.monotonic() - started

        # The last start: everyone retries until there is nothing left to do.
        await asyncio.to_thread(server.start)
        await converge(volunteers, world, reviewer, coordinator, ledger)
        await check_after_restart(volunteers, ledger, data_dir)
        await check_converged(db, volunteers, ledger)
        server.stop()
        starts = server.start_seconds
        print(f"\n[crash {backend}, {WORKERS[backend]} worker(s)] kills={KILLS} "
              f"in {crash_seconds:.0f} s; server start {sum(starts) / len(starts):.2f} s "
              f"mean, {max(starts):.2f} s max; checks passed (summed over all restarts): "
              + ", ".join(f"{k}={v}" for k, v in sorted(ledger.verified.items()))
              + "; acknowledged: observations="
              + str(sum(len(v.created) for v in volunteers))
              + f", photo files={sum(p.done for p in ledger.uploads.values())}, "
              f"photo bytes={sum(p.acked for p in ledger.uploads.values())}, "
              f"decisions={len(ledger.decisions)}, releases={len(ledger.releases)}; "
              "retried failures: "
              + ", ".join(f"{k}={v}" for k, v in sorted(ledger.retries.items())))
        assert ledger.verified["observations"] > 0 and ledger.verified["photo_bytes"] > 0
        assert ledger.decisions and ledger.releases
    finally:
        server.kill()
        for v in volunteers:
            await v.client.close()
            await v.http.aclose()
        await reviewer.aclose()
        await coordinator.aclose()


# --- the clients ----------------------------------------------------------------


async def volunteer_works(v: Volunteer, world: World, stop: asyncio.Event, ledger: Ledger,
                          *, seed: int) -> None:
    """Record a few observations (some outside the project area: they go to
    review; some with a photo), sync, upload the photos; again."""
    rng = random.Random(seed)
    round_no = 0
    while not stop.is_set():
        tag = f"{v.client.device_id}:{seed}:{round_no}"
        round_no += 1
        count = rng.randint(1, 3)
        for _ in range(count):
            outside = rng.random() < 0.5
            where = {"latitude": 48.85, "longitude": 2.35} if outside else {}
            oid = await v.client.record(OBS, new_observation(world, notes=tag, **where))
            v.created.add(oid)
            if rng.random() < 0.4:
                data = photo_bytes(rng.randrange(1 << 30))
                pid = await v.client.record("photos", {
                    "observation_id": oid, "sha256": sha256(data), "license": "CC-BY-4.0"})
                v.photos[pid] = PhotoFile(pid, data)
        v.rounds[tag] = count
        try:
            await v.client.sync()
        except (SyncError, httpx.HTTPError):
            ledger.retries["sync"] += 1
            continue
        unsynced = {r[1] for r in await v.client.outbox()}
        for photo in list(v.photos.values()):
            if stop.is_set():
                return
            if not photo.done and photo.photo_id not in unsynced:
                await upload(v.http, photo, ledger)


async def upload(http: httpx.AsyncClient, photo: PhotoFile, ledger: Ledger) -> None:
    """tus: create the upload, then PATCH it chunk by chunk, resuming at the
    server's offset (HEAD) after any failure."""
    try:
        if photo.upload_id is None:
            meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in {
                "photo_id": photo.photo_id, "filetype": "image/jpeg",
                "sha256": sha256(photo.data)}.items())
            r = await http.post("/api/v1/uploads/", headers={
                **TUS, "Upload-Length": str(len(photo.data)), "Upload-Metadata": meta})
            if r.status_code == 409 and r.json()["error"]["code"] == "already_uploaded":
                photo.done = True  # an earlier upload's last response was lost
                return
            if r.status_code != 201:
                ledger.retries[f"upload create {r.status_code}"] += 1
                return
            photo.upload_id = r.headers["Location"].rsplit("/", 1)[1]
            ledger.uploads[photo.upload_id] = photo
        url = f"/api/v1/uploads/{photo.upload_id}"
        head = await http.head(url, headers=TUS)
        if head.status_code in (404, 410):
            photo.upload_id = None  # gone (expired): start again
            return
        if head.status_code != 200:
            ledger.retries[f"upload head {head.status_code}"] += 1
            return
        offset = int(head.headers["Upload-Offset"])
        assert offset >= photo.acked, "the server lost acknowledged photo bytes"
        while offset < len(photo.data):
            r = await http.patch(url, content=photo.data[offset:offset + CHUNK], headers={
                **TUS, "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"})
            if r.status_code == 423:  # a killed writer's lease has not run out yet
                ledger.retries["upload locked"] += 1
                await asyncio.sleep(0.3)
                return
            assert r.status_code == 204, (r.status_code, r.text)
            offset = int(r.headers["Upload-Offset"])
            photo.acked = max(photo.acked, offset)
        photo.done = True
    except httpx.HTTPError:
        ledger.retries["upload"] += 1


async def expert_decides(http: httpx.AsyncClient, world: World, stop: asyncio.Event,
                         ledger: Ledger) -> None:
    """Claim the next records (the claims survive a kill: they are the
    expert's own) and decide each; an expert's decision settles the record."""
    while not stop.is_set():
        try:
            r = await http.post("/api/v1/review/claims",
                                json={"project": world.project.slug, "limit": 3})
            if r.status_code != 200:
                ledger.retries[f"review claim {r.status_code}"] += 1
                await asyncio.sleep(0.05)
                continue
            items = r.json()["items"]
            if not items:
                await asyncio.sleep(0.1)
                continue
            for item in items:
                decision = "verify" if int(sha256(item["id"].encode())[:2], 16) % 3 else "reject"
                r = await http.post("/api/v1/review/decisions", json={
                    "observation_id": item["id"], "decision": decision})
                if r.status_code == 201:
                    ledger.decisions[item["id"]] = decision
                elif r.status_code >= 500:
                    ledger.retries[f"review decide {r.status_code}"] += 1
        except httpx.HTTPError:
            ledger.retries["review"] += 1
            await asyncio.sleep(0.05)


async def coordinator_publishes(http: httpx.AsyncClient, stop: asyncio.Event, ledger: Ledger,
                                *, delay: float) -> None:
    """One publish (the next version) a while after the start: a 202 queues a
    durable job, whose release must appear even if the server dies; its
    status is followed until done or the window ends."""
    try:
        await asyncio.wait_for(stop.wait(), delay)
        return
    except TimeoutError:
        pass
    try:
        r = await http.post("/api/v1/datasets", json={})
    except httpx.HTTPError:
        ledger.retries["publish"] += 1
        return
    assert r.status_code in (202, 409), (r.status_code, r.text)
    if r.status_code == 409:
        ledger.retries["publish 409"] += 1
        return
    body = r.json()
    ledger.publish_jobs[body["job"]] = body["version"]
    with contextlib.suppress(httpx.HTTPError):
        await follow_publish(http, body["status_url"], ledger, stop)


async def follow_publish(http: httpx.AsyncClient, status_url: str, ledger: Ledger,
                         stop: asyncio.Event | None = None) -> None:
    while stop is None or not stop.is_set():
        status = (await http.get(status_url)).json()
        assert status["state"] != "failed", status
        if status["state"] == "done":
            ledger.releases.add(status["version"])
            return
        await asyncio.sleep(0.2)


async def publishes_done(seconds: float = 60) -> None:
    """Wait (at most ``seconds``) until no publish is queued or running: one
    cut off by a kill is claimed again only when its lease runs out, and a
    server that restarts in a fraction of a second (tests/servers.py) would
    otherwise leave it too little of a longer run on a loaded machine."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds * 10)):
        if time.monotonic() > deadline or not await Job.filter(
                kind=RELEASE_JOB, state__in=[JobState.QUEUED, JobState.RUNNING]).exists():
            return
        await asyncio.sleep(0.1)


# --- the checks -------------------------------------------------------------------


async def check_after_restart(volunteers: list[Volunteer], ledger: Ledger,
                              data_dir: Path) -> None:
    await check_observations(volunteers, ledger)
    await check_photos(ledger, data_dir / "media")
    await check_decisions(ledger)
    await check_releases(ledger, data_dir / "releases")
    failed = await Job.filter(state=JobState.FAILED).values_list("kind", "last_error")
    assert not failed, failed


async def check_observations(volunteers: list[Volunteer], ledger: Ledger) -> None:
    for v in volunteers:
        unsynced = {rid for _, rid, _ in await v.client.outbox()}
        synced = {r["id"] for r in await v.client.records(OBS)} - unsynced
        stored = set(await Observation.filter(user_id=v.user_id, is_deleted=False)
                     .values_list("id", flat=True))
        assert synced <= stored, f"acknowledged observations lost: {synced - stored}"
        ledger.verified["observations"] += len(synced)
        # One push is one transaction: a round's records are all stored or none.
        per_round = Counter(await Observation.filter(user_id=v.user_id)
                            .values_list("notes", flat=True))
        for tag, count in per_round.items():
            if tag in v.rounds:
                assert count == v.rounds[tag], f"half-applied push: {tag} {count}/{v.rounds[tag]}"
                ledger.verified["push_batches"] += 1


async def check_photos(ledger: Ledger, media: Path) -> None:
    uploads = {u.id: u for u in await Upload.filter(id__in=list(ledger.uploads))}
    for upload_id, photo in ledger.uploads.items():
        if photo.acked == 0:
            continue
        upload = uploads[upload_id]
        assert upload.offset >= photo.acked, (upload_id, upload.offset, photo.acked)
        if upload.state == UploadStatus.RECEIVING:
            stored = (media / upload.storage_key).read_bytes()
            assert stored[:photo.acked] == photo.data[:photo.acked], upload_id
        elif upload.state == UploadStatus.COMPLETE:  # processing to come: the whole file
            assert (media / upload.storage_key).read_bytes() == photo.data, upload_id
        else:
            assert upload.state == UploadStatus.PROCESSED, (upload_id, upload.state)
        ledger.verified["photo_bytes"] += photo.acked
    # No photo is attached without its files; one being processed has its upload.
    for p in await Photo.filter(upload_state__in=[UploadState.READY, UploadState.PROCESSING]):
        if p.upload_state == UploadState.READY:
            assert p.storage_key and sha256((media / p.storage_key).read_bytes()) == p.sha256
            for size in p.derivative_sizes or []:
                assert (media / "derivatives" / str(p.sha256) / f"{size}.jpg").stat().st_size
            ledger.verified["ready_photos"] += 1
        else:
            complete = await Upload.filter(photo_id=p.id, state=UploadStatus.COMPLETE).first()
            assert complete is not None, f"photo {p.id} is processing with no complete upload"
            assert (media / complete.storage_key).stat().st_size == complete.length


async def check_decisions(ledger: Ledger) -> None:
    stored = {d.observation_id: d.decision  # type: ignore[attr-defined]
              for d in await ReviewDecision.filter(observation_id__in=list(ledger.decisions))}
    status = dict(await Observation.filter(id__in=list(ledger.decisions))
                  .values_list("id", "review_status"))
    for oid, decision in ledger.decisions.items():
        assert str(stored.get(oid)) == decision, (oid, stored.get(oid), decision)
        assert str(status[oid]) == {"verify": "verified", "reject": "rejected"}[decision]
        ledger.verified["decisions"] += 1


async def check_releases(ledger: Ledger, releases: Path) -> None:
    listed = {r.version: r for r in await Release.all()}
    assert ledger.releases <= set(listed), ledger.releases - set(listed)
    for release in listed.values():
        assert (releases / release.path).is_dir(), f"release {release.version} has no folder"
    ledger.verified["release_folders"] += whole_release_folders(releases)


def whole_release_folders(releases: Path) -> int:
    """Every visible folder is whole: its SHA256SUMS matches every file in it."""
    count = 0
    for folder in releases.iterdir() if releases.exists() else []:
        if folder.name.startswith("."):
            continue  # a publish's work folder (hidden, never served)
        sums = {name: digest for digest, name in (
            line.split("  ", 1) for line in (folder / "SHA256SUMS").read_text().splitlines())}
        files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert files - {"SHA256SUMS"} == set(sums), (folder.name, files ^ set(sums))
        for name, digest in sums.items():
            assert sha256((folder / name).read_bytes()) == digest, (folder.name, name)
        count += 1
    return count


# --- after the last restart -----------------------------------------------------------


async def until(what: str, done: Callable[[], Awaitable[bool]], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not await done():
        assert time.monotonic() < deadline, f"no convergence: {what}"
        await asyncio.sleep(0.2)


async def converge(volunteers: list[Volunteer], world: World, reviewer: httpx.AsyncClient,
                   coordinator: httpx.AsyncClient, ledger: Ledger) -> None:
    """Retry like the apps would, until nothing is left to send or process."""
    async def devices_quiet() -> bool:
        quiet = True
        for v in volunteers:
            try:
                report = await v.client.sync()
            except (SyncError, httpx.HTTPError):
                ledger.retries["sync"] += 1
                return False
            quiet &= report.quiet and not await v.client.outbox()
        return quiet

    await until("devices sync clean", devices_quiet)

    async def photos_uploaded() -> bool:
        for v in volunteers:
            for photo in v.photos.values():
                if not photo.done:
                    await upload(v.http, photo, ledger)
        return all(p.done for v in volunteers for p in v.photos.values())

    await until("photos uploaded", photos_uploaded)
    photo_ids = [pid for v in volunteers for pid in v.photos]

    async def processed() -> bool:
        states = await Photo.filter(id__in=photo_ids).values_list("upload_state", flat=True)
        return len(states) == len(photo_ids) and all(s == UploadState.READY for s in states)

    await until("photos processed (jobs retried)", processed)

    async def jobs_done() -> bool:  # publishes queued before a kill run again too
        return not await Job.filter(state__in=[JobState.QUEUED, JobState.RUNNING]).exists()

    await until("queued jobs done (publishes retried)", jobs_done, seconds=180)
    r = await coordinator.post("/api/v1/datasets", json={})
    assert r.status_code == 202, r.text
    await asyncio.wait_for(follow_publish(coordinator, r.json()["status_url"], ledger), 120)
    queued = set(ledger.publish_jobs.values())
    listed = set(await Release.all().values_list("version", flat=True))
    assert queued <= listed, f"acknowledged publishes never done: {queued - listed}"
    ledger.releases |= queued
    await until("devices sync clean after processing", devices_quiet)


async def check_converged(app: Starlette, volunteers: list[Volunteer], ledger: Ledger) -> None:
    """The server holds exactly the union of the devices' observations, and each
    device holds exactly what the server would send it."""
    for v in volunteers:
        stored = await Observation.filter(user_id=v.user_id).values_list("id", flat=True)
        assert len(stored) == len(set(stored)) == len(v.created)
        assert set(stored) == v.created, set(stored) ^ v.created
        photos = await Photo.filter(user_id=v.user_id).values_list("id", flat=True)
        assert sorted(photos) == sorted(v.photos)
        assert await v.client.rejections() == []
        view = await server_view(app, v.token)
        for table in TABLE_NAMES:
            local = {r["id"]: r for r in await v.client.records(table)}
            assert local == view[table], (v.client.device_id, table)
        ledger.verified["converged_devices"] += 1
