"""The ``phenosync`` command, run as a user runs it: a real process."""

from __future__ import annotations

import os
import subprocess
import sys

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
