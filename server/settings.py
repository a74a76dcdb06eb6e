"""Settings: read once, from the environment, with types and defaults.

Nothing else in the code base reads ``os.environ``.  Every setting is listed in
``docs/settings.md``; ``tests/server/test_settings.py`` fails when one is not.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from starlette.config import Config
from starlette.datastructures import Secret

PREFIX = "PHENOSYNC_"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    secret_key: Secret = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 4 * 1024 * 1024
    token_ttl_days: int = 365
    token_cache_seconds: float = 5.0
    tombstone_retention_days: int = 90
    log_level: str = "info"
    log_json: bool = True
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_minute: int = 600
    login_attempts_per_15min: int = 10
    metrics_multiproc_dir: str | None = None
    upload_max_bytes: int = 50 * 1024 * 1024
    upload_expiry_hours: int = 24
    max_image_pixels: int = 60_000_000
    job_workers: int = 2
    job_lease_seconds: int = 60
    review_lease_minutes: int = 10
    keep_alive_seconds: int = 75
    database_pool_size: int = 10
    # Open-data releases: grid cell (degrees) that obscured records and
    # sensitive taxa are snapped to, and the public address of this server
    # (for absolute URLs in releases; empty means relative URLs).
    grid_degrees: float = 0.1
    public_url: str = ""
    # Media: empty means ``<data dir>/media``; ``s3://bucket/prefix`` a bucket
    # of an S3-compatible object store (``server/s3.py``).
    media_url: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: Secret = field(default=Secret(""), repr=False)
    s3_part_bytes: int = 8 * 1024 * 1024

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def releases_dir(self) -> Path:
        return self.data_dir / "releases"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment).

        Creates the data dir, and on first run a secret key kept in it (mode
        0600), so that pseudonyms and signed values survive restarts.
        """
        env = os.environ if environ is None else environ
        config = Config(environ=dict(env))
        data_dir = Path(config(PREFIX + "DATA_DIR", cast=str, default="./data")).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        default_db = f"sqlite://{data_dir / 'phenosync.sqlite3'}"
        database_url = config(PREFIX + "DATABASE_URL", cast=str, default=default_db)
        secret = config(PREFIX + "SECRET_KEY", cast=Secret, default=None)
        if secret is None or not str(secret):
            secret = Secret(_stored_secret(data_dir))
        return cls(
            data_dir=data_dir,
            database_url=normalise_database_url(database_url),
            secret_key=secret,
            host=config(PREFIX + "HOST", cast=str, default="127.0.0.1"),
            port=config(PREFIX + "PORT", cast=int, default=8000),
            max_body_bytes=config(PREFIX + "MAX_BODY_BYTES", cast=int, default=4 * 1024 * 1024),
            token_ttl_days=config(PREFIX + "TOKEN_TTL_DAYS", cast=int, default=365),
            token_cache_seconds=max(
                0.0, config(PREFIX + "TOKEN_CACHE_SECONDS", cast=float, default=5.0)
            ),
            tombstone_retention_days=config(
                PREFIX + "TOMBSTONE_RETENTION_DAYS", cast=int, default=90
            ),
            log_level=config(PREFIX + "LOG_LEVEL", cast=str, default="info"),
            log_json=config(PREFIX + "LOG_JSON", cast=bool, default=True),
            cors_origins=tuple(
                o.strip()
                for o in config(PREFIX + "CORS_ORIGINS", cast=str, default="").split(",")
                if o.strip()
            ),
            rate_limit_per_minute=config(PREFIX + "RATE_LIMIT_PER_MINUTE", cast=int, default=600),
            login_attempts_per_15min=config(
                PREFIX + "LOGIN_ATTEMPTS_PER_15MIN", cast=int, default=10
            ),
            # prometheus_client's own variable: set it for several workers.
            metrics_multiproc_dir=config("PROMETHEUS_MULTIPROC_DIR", cast=str, default="") or None,
            upload_max_bytes=config(
                PREFIX + "UPLOAD_MAX_BYTES", cast=int, default=50 * 1024 * 1024
            ),
            upload_expiry_hours=config(PREFIX + "UPLOAD_EXPIRY_HOURS", cast=int, default=24),
            max_image_pixels=config(PREFIX + "MAX_IMAGE_PIXELS", cast=int, default=60_000_000),
            job_workers=config(PREFIX + "JOB_WORKERS", cast=int, default=2),
            job_lease_seconds=max(
                3, config(PREFIX + "JOB_LEASE_SECONDS", cast=int, default=60)
            ),
            review_lease_minutes=config(PREFIX + "REVIEW_LEASE_MINUTES", cast=int, default=10),
            keep_alive_seconds=config(PREFIX + "KEEP_ALIVE_SECONDS", cast=int, default=75),
            database_pool_size=config(PREFIX + "DATABASE_POOL_SIZE", cast=int, default=10),
            grid_degrees=config(PREFIX + "GRID_DEGREES", cast=float, default=0.1),
            public_url=config(PREFIX + "PUBLIC_URL", cast=str, default="").rstrip("/"),
            media_url=_media_url(config(PREFIX + "MEDIA_URL", cast=str, default="")),
            s3_endpoint_url=config(PREFIX + "S3_ENDPOINT_URL", cast=str, default=""),
            s3_region=config(PREFIX + "S3_REGION", cast=str, default=""),
            s3_access_key_id=config(PREFIX + "S3_ACCESS_KEY_ID", cast=str, default=""),
            s3_secret_access_key=config(
                PREFIX + "S3_SECRET_ACCESS_KEY", cast=Secret, default=Secret("")
            ),
            s3_part_bytes=config(PREFIX + "S3_PART_BYTES", cast=int, default=8 * 1024 * 1024),
        )


#: Every environment variable ``Settings.from_env`` reads; the docs test uses it.
ENVIRONMENT_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR",) + tuple(
    PREFIX + name
    for name in (
        "DATA_DIR",
        "DATABASE_URL",
        "SECRET_KEY",
        "HOST",
        "PORT",
        "MAX_BODY_BYTES",
        "TOKEN_TTL_DAYS",
        "TOKEN_CACHE_SECONDS",
        "TOMBSTONE_RETENTION_DAYS",
        "LOG_LEVEL",
        "LOG_JSON",
        "CORS_ORIGINS",
        "RATE_LIMIT_PER_MINUTE",
        "LOGIN_ATTEMPTS_PER_15MIN",
        "UPLOAD_MAX_BYTES",
        "UPLOAD_EXPIRY_HOURS",
        "MAX_IMAGE_PIXELS",
        "JOB_WORKERS",
        "JOB_LEASE_SECONDS",
        "REVIEW_LEASE_MINUTES",
        "KEEP_ALIVE_SECONDS",
        "DATABASE_POOL_SIZE",
        "GRID_DEGREES",
        "PUBLIC_URL",
        "MEDIA_URL",
        "S3_ENDPOINT_URL",
        "S3_REGION",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_PART_BYTES",
    )
)


def _media_url(url: str) -> str:
    """Empty, or ``s3://bucket[/prefix]``: anything else is refused at start."""
    url = url.strip()
    if not url:
        return ""
    bucket = url[len("s3://"):].split("/", 1)[0] if url.startswith("s3://") else ""
    if not bucket:
        raise ValueError(
            f"PHENOSYNC_MEDIA_URL={url!r} is not understood: leave it empty for the media "
            "folder of the data dir, or set s3://bucket/prefix for an S3-compatible bucket."
        )
    return url.rstrip("/")


def normalise_database_url(url: str) -> str:
    """Accept the spellings people paste (``postgresql://``) as Tortoise's."""
    for prefix in ("postgresql+asyncpg://", "postgresql://"):
        if url.startswith(prefix):
            return "postgres://" + url[len(prefix) :]
    return url


def _stored_secret(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if not path.exists():
        # Write a private temporary file, then link it into place: link fails
        # when the key exists, so two processes starting at once agree on one
        # key and neither ever reads a half-written file.
        tmp = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
