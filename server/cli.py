"""The ``phenosync`` command: serve, migrate, users, demo data.

Every command reads the same settings as the server (``server.settings``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from schemas.roles import ROLE_NAMES, GlobalRole, ProjectRole
from server.database import Database
from server.settings import Settings

T = TypeVar("T")


def run_with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Open the database, make it current, run ``work``, close it."""

    async def main() -> T:
        database = Database(settings.database_url)
        await database.open()
        try:
            with database.context:
                return await work(database)
        finally:
            await database.close()

    return asyncio.run(main())


def _progress(event: str, app_label: str, name: str) -> None:
    if event == "apply_done":
        click.echo(f"  applied {app_label}.{name}")


@click.group()
@click.version_option(package_name="phenosync")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Phenosync: the server of a citizen-science phenology network."""
    ctx.obj = Settings.from_env()


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Apply pending database migrations."""

    async def work(db: Database) -> None:
        pending = await db.pending_migrations()
        await db.migrate(progress=_progress)
        click.echo(f"{len(pending)} migration(s) applied; the database is up to date.")

    run_with_database(settings, work)


@main.command()
@click.option("--name", default=None, help="Name of the new migration.")
@click.pass_obj
def makemigrations(settings: Settings, name: str | None) -> None:
    """(Developers) write a migration for model changes into server/migrations."""
    from tortoise.cli import cli as tortoise_cli
    from tortoise.config import TortoiseConfig

    from server.database import tortoise_config

    config = TortoiseConfig.resolve_args(tortoise_config(settings.database_url), None)
    # Reuse Tortoise's own command, with our config.
    tortoise_cli._load_config = lambda ctx: config
    asyncio.run(
        tortoise_cli.makemigrations(tortoise_cli.CLIContext(None, None), (), False, name)
    )


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: PHENOSYNC_HOST).")
@click.option("--port", default=None, type=int, help="Port (default: PHENOSYNC_PORT).")
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
@click.pass_obj
def serve(settings: Settings, host: str | None, port: int | None, workers: int) -> None:
    """Apply pending migrations, then serve the API."""
    import uvicorn

    if workers > 1 and settings.database_url.startswith("sqlite://"):
        raise click.UsageError(
            f"--workers {workers} on SQLite: run one process on SQLite (its single writer "
            "queues the requests of one process; several processes contend for it and can "
            "fail with 'database is locked'). Set PHENOSYNC_DATABASE_URL to a PostgreSQL "
            "database to run several workers (docs/operations.md)."
        )
    run_with_database(settings, lambda db: db.migrate(progress=_progress))
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,  # the app logs each request itself, with its id
        proxy_headers=True,
        timeout_keep_alive=settings.keep_alive_seconds,
        # uvicorn kills a worker that does not answer its health ping in time
        # (default 5 s) and starts another: on a busy machine that kills
        # workers still importing the app, or serving requests.
        timeout_worker_healthcheck=60,
    )


@main.group()
def user() -> None:
    """Manage users."""


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLE_NAMES), default="volunteer", show_default=True)
@click.option("--project", "project_slug", default=None,
              help="Project slug: needed for reviewer and expert, optional otherwise.")
@click.option("--password", default=None,
              help="Password for logging in (default: none, token only).")
@click.pass_obj
def user_add(
    settings: Settings, username: str, role: str, project_slug: str | None, password: str | None
) -> None:
    """Create a user and print a bearer token for it (the last line of output)."""
    from tortoise.exceptions import IntegrityError
    from tortoise.transactions import in_transaction

    from server.models import audit
    from server.models.accounts import Membership, User
    from server.models.reference import Project
    from server.passwords import hash_password_sync
    from server.tokens import issue

    if role in ("reviewer", "expert") and project_slug is None:
        raise click.UsageError(f"--role {role} is a project role: give --project SLUG.")
    global_role = GlobalRole(role) if role in GlobalRole.__members__.values() else None
    project_role = ProjectRole(role) if role in ProjectRole.__members__.values() else None

    async def work(db: Database) -> str:
        project = None
        if project_slug is not None:
            project = await Project.get_or_none(slug=project_slug)
            if project is None:
                raise click.ClickException(f"There is no project {project_slug!r}.")
        # An unusable hash: a user created without a password logs in by token only.
        pw_hash = hash_password_sync(password) if password else "!"
        try:
            async with in_transaction() as conn:
                created = await User.create(
                    username=username,
                    display_name=username,
                    password_hash=pw_hash,
                    role=global_role or GlobalRole.VOLUNTEER,
                    using_db=conn,
                )
                if project is not None:
                    await Membership.create(
                        user=created, project=project,
                        role=project_role or ProjectRole.COORDINATOR, using_db=conn,
                    )
                await audit.record("user.created", "user", created.id, using_db=conn,
                                   data={"role": role, "project": project_slug, "via": "cli"})
        except IntegrityError:
            raise click.ClickException(f"The user {username!r} exists already.") from None
        token, _ = await issue(created, name="cli", ttl_days=settings.token_ttl_days)
        return token

    token = run_with_database(settings, work)
    where = f" in project {project_slug}" if project_slug else ""
    click.echo(f"Created user {username!r} with role {role}{where}. Bearer token:")
    click.echo(token)


@main.command()
@click.option("--observations", default=400, show_default=True, help="How many observations.")
@click.option("--seed", default=2026, show_default=True)
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) when data exists.")
@click.pass_obj
def demo(settings: Settings, observations: int, seed: int, if_empty: bool) -> None:
    """Load the vocabulary, a demo project, demo users and observations into an empty database."""
    from server.demo import DEMO_PASSWORD, DEMO_USERS, database_is_empty, load_demo

    async def work(db: Database) -> Any:
        await db.migrate()
        if not await database_is_empty():
            return None
        return await load_demo(observations=observations, seed=seed)

    report = run_with_database(settings, work)
    if report is None:
        if if_empty:
            click.echo("The database has data already: demo data not loaded.")
            return
        raise click.ClickException(
            "The database is not empty: demo data only loads into an empty database."
        )
    click.echo(
        f"Loaded {report.taxa} taxa, {report.phenophases} phenophases, {report.users} users "
        f"and {report.observations} observations."
    )
    click.echo(f"Demo users (password {DEMO_PASSWORD!r}): {', '.join(DEMO_USERS)}")


@main.command("purge-tombstones")
@click.pass_obj
def purge_tombstones_command(settings: Settings) -> None:
    """Remove tombstones older than PHENOSYNC_TOMBSTONE_RETENTION_DAYS (run daily)."""
    from server.tombstones import purge_tombstones

    async def work(db: Database) -> int:
        return await purge_tombstones(settings.tombstone_retention_days)

    count = run_with_database(settings, work)
    click.echo(f"Purged {count} tombstone(s) older than {settings.tombstone_retention_days} days.")


@main.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--no-media", is_flag=True,
              help="Leave media out (copy a bucket with the object store's own tools).")
@click.pass_obj
def backup_command(settings: Settings, target: Path, no_media: bool) -> None:
    """Write a backup of the database and media to TARGET (.tar.gz); safe while serving."""
    from server.backup import BackupError, backup

    try:
        manifest = backup(settings, target, media=not no_media)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Backed up the {manifest['database']} database and "
               f"{', '.join(manifest['folders']) or 'no folders'} to {target}.")


@main.command("restore")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite a database that holds data.")
@click.pass_obj
def restore_command(settings: Settings, source: Path, force: bool) -> None:
    """Restore a backup made by `phenosync backup` (stop the server first)."""
    from server.backup import BackupError, restore
    from server.demo import database_is_empty

    async def has_data(db: Database) -> bool:
        await db.migrate()
        return not await database_is_empty()

    try:
        restore(settings, source, force=force,
                database_has_data=run_with_database(settings, has_data))
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    run_with_database(settings, lambda db: db.migrate(progress=_progress))
    click.echo(f"Restored {source}.")


@main.command("recheck")
@click.option("--project", "project_slug", default=None, help="Only this project's records.")
@click.pass_obj
def recheck_command(settings: Settings, project_slug: str | None) -> None:
    """Re-run the quality checks on records still under review (after new
    verified data or a change of a project's area or limits)."""
    from server.models.reference import Project
    from server.quality.recheck import recheck

    async def work(db: Database) -> tuple[int, int]:
        project_id = None
        if project_slug is not None:
            project = await Project.get_or_none(slug=project_slug)
            if project is None:
                raise click.ClickException(f"There is no project {project_slug!r}.")
            project_id = project.id
        return await recheck(project_id)

    checked, changed = run_with_database(settings, work)
    click.echo(f"Checked {checked} open record(s); {changed} changed flags or review status.")


@main.command("load-vocabulary")
@click.pass_obj
def load_vocabulary_command(settings: Settings) -> None:
    """Load or update the shipped taxa and phenophases."""
    from server.vocabulary import load_vocabulary

    async def work(db: Database) -> Any:
        await db.migrate()
        return await load_vocabulary()

    r = run_with_database(settings, work)
    click.echo(f"{r.created} created, {r.updated} updated, {r.unchanged} unchanged.")


@main.command()
@click.option("--version", "version", default=None, metavar="X.Y.Z",
              help="Version of the release (default: the next minor, or major after a "
                   "removed column).")
@click.pass_obj
def publish(settings: Settings, version: str | None) -> None:
    """Publish an open-data release under the data dir's releases/ folder."""
    from schemas import errors
    from server.release_source import DatabaseReleaseSource
    from server.releases import publish as publish_release

    async def work(db: Database) -> Any:
        await db.migrate()
        total = await DatabaseReleaseSource.of(db).count()
        # Two passes over the observations: read (and sorted into runs per
        # year), then written; the bar counts each.
        with click.progressbar(length=total, label="Reading observations", file=sys.stderr,
                               show_pos=True) as bar:
            writing = False

            def progress(stage: str, rows: int) -> None:
                nonlocal writing
                if stage == "reading":
                    bar.update(rows)
                elif stage == "observations":
                    if not writing:
                        writing = True
                        bar.label, bar.pos = "Writing observations", 0
                    bar.update(rows)
                else:
                    bar.label = stage.capitalize()
                    bar.render_progress()

            try:
                return await publish_release(settings, db, version=version, progress=progress)
            except errors.PhenosyncError as exc:
                raise click.ClickException(exc.message) from None

    release = run_with_database(settings, work)
    click.echo(
        f"Published release {release.version}: {release.observation_count} observations, "
        f"{release.media_count} photos, {release.retracted_count} retracted, in "
        f"{settings.releases_dir / release.path}"
    )
    click.echo(f"SHA-256 of SHA256SUMS: {release.sha256}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

