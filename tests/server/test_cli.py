"""The ``phenosync`` command, run as a user runs it: a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from starlette.applications import Starlette

from server.models.accounts import Membership, User
from tests.factories import auth, make_project


def phenosync(app: Starlette, *args: str) -> subprocess.CompletedProcess[str]:
    settings = app.state.settings
    env = {
        **os.environ,
        "PHENOSYNC_DATA_DIR": str(settings.data_dir),
        "PHENOSYNC_DATABASE_URL": settings.database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


async def test_user_add_prints_a_token_that_works(
    db: Starlette, client: httpx.AsyncClient
) -> None:
    project = await make_project(slug="hazel")
    done = phenosync(db, "user", "add", "rita", "--role", "reviewer", "--project", "hazel")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    me = await client.get("/api/v1/me", headers=auth(token))
    assert me.status_code == 200, me.text
    assert me.json()["memberships"] == [{"project": "hazel", "role": "reviewer"}]
    member = await Membership.get(user__username="rita", project=project)
    assert member.role == "reviewer"


async def test_user_add_refuses_bad_input_without_writing(db: Starlette) -> None:
    no_project = phenosync(db, "user", "add", "rita", "--role", "expert")
    assert no_project.returncode != 0 and "--project" in no_project.stderr
    unknown = phenosync(db, "user", "add", "rita", "--role", "volunteer", "--project", "nope")
    assert unknown.returncode != 0 and "no project" in unknown.stderr
    bad_role = phenosync(db, "user", "add", "rita", "--role", "king")
    assert bad_role.returncode != 0
    assert not await User.exists(username="rita")
    ok = phenosync(db, "user", "add", "rita", "--role", "admin")
    assert ok.returncode == 0
    again = phenosync(db, "user", "add", "rita")
    assert again.returncode != 0 and "exists" in again.stderr
    assert (await User.get(username="rita")).role == "admin"


async def test_migrate_reports_an_up_to_date_database(db: Starlette) -> None:
    done = phenosync(db, "migrate")
    assert done.returncode == 0, done.stderr
    assert "0 migration(s) applied" in done.stdout


async def test_publish_writes_a_release_and_refuses_to_overwrite_it(db: Starlette) -> None:
    import shutil

    from tests.factories import make_user
    from tests.factories_observations import make_observation, make_phenophase, make_taxon

    releases = db.state.settings.releases_dir
    shutil.rmtree(releases, ignore_errors=True)
    project = await make_project()
    user, _ = await make_user(project=project)
    taxon, phase = await make_taxon(), await make_phenophase()
    for _ in range(3):
        await make_observation(user, project, taxon, phase)
    try:
        done = phenosync(db, "publish", "--version", "2.1.0")
        assert done.returncode == 0, done.stderr
        assert "Published release 2.1.0: 3 observations" in done.stdout
        # The progress bar, through both passes over the observations.
        assert "Reading observations" in done.stderr, done.stderr
        assert "Writing observations" in done.stderr, done.stderr
        assert (releases / "2.1.0" / "SHA256SUMS").exists()
        again = phenosync(db, "publish", "--version", "2.1.0")
        assert again.returncode != 0 and "exists already" in again.stderr
        bad = phenosync(db, "publish", "--version", "two")
        assert bad.returncode != 0 and "MAJOR.MINOR.PATCH" in bad.stderr
        following = phenosync(db, "publish")
        assert following.returncode == 0 and "release 2.2.0" in following.stdout
    finally:
        shutil.rmtree(releases, ignore_errors=True)


async def test_recheck_flags_open_records_after_the_project_area_moves(db: Starlette) -> None:
    from server.models.observations import Observation, QualityFlag
    from server.models.reference import Project
    from server.quality.recheck import recheck
    from tests.factories import make_user
    from tests.factories_sync import Device, make_world, observation

    world = await make_world()
    _, token = await make_user("volunteer", project=world.project)
    transport = httpx.ASGITransport(app=db)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        phone = Device(client, token)
        record = observation(world)  # in Wageningen
        await phone.push({"observations": {"created": [record]}})
    assert (await Observation.get(id=record["id"])).review_status == "auto_accepted"
    # The coordinator narrows the area to Groningen: the record is now outside.
    await Project.filter(id=world.project.id).update(
        min_latitude=53.0, max_latitude=53.5, min_longitude=6.3, max_longitude=6.9)
    checked, changed = await recheck()
    assert (checked, changed) == (1, 1)
    stored = await Observation.get(id=record["id"])
    assert stored.review_status == "needs_review" and stored.flag_count == 1
    assert await QualityFlag.exists(observation_id=record["id"], code="outside_project_area")
    done = phenosync(db, "recheck", "--project", "nope")
    assert done.returncode != 0 and "no project" in done.stderr
    done = phenosync(db, "recheck")
    assert done.returncode == 0 and "Checked 1 open record(s); 0 changed" in done.stdout


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    env = {**os.environ, "PHENOSYNC_DATA_DIR": str(tmp_path)}
    env.pop("PHENOSYNC_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--workers", "4"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "run one process on SQLite" in done.stderr
    assert not (tmp_path / "phenosync.sqlite3").exists()  # refused before migrating
