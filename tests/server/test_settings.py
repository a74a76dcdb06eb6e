from __future__ import annotations

import re
import stat
from pathlib import Path

from server.settings import ENVIRONMENT_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_put_everything_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings.from_env({"PHENOSYNC_DATA_DIR": str(tmp_path / "d")})
    assert s.data_dir == (tmp_path / "d").resolve()
    assert s.database_url == f"sqlite://{s.data_dir / 'phenosync.sqlite3'}"
    assert s.media_dir.parent == s.data_dir and s.releases_dir.parent == s.data_dir
    assert (s.host, s.port) == ("127.0.0.1", 8000)


def test_secret_key_is_generated_once_kept_private_and_reused(tmp_path: Path) -> None:
    env = {"PHENOSYNC_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env)
    second = Settings.from_env(env)
    assert str(first.secret_key) == str(second.secret_key)
    assert len(str(first.secret_key)) >= 48
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600
    assert str(first.secret_key) not in repr(first)
    given = Settings.from_env({**env, "PHENOSYNC_SECRET_KEY": "from-env"})
    assert str(given.secret_key) == "from-env"


def test_environment_overrides_and_postgresql_spelling(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "PHENOSYNC_DATA_DIR": str(tmp_path),
            "PHENOSYNC_DATABASE_URL": "postgresql://u@db:5432/phen",
            "PHENOSYNC_HOST": "0.0.0.0",
            "PHENOSYNC_PORT": "9000",
            "PHENOSYNC_MAX_BODY_BYTES": "1000",
        }
    )
    assert s.database_url == "postgres://u@db:5432/phen"
    assert (s.host, s.port, s.max_body_bytes) == ("0.0.0.0", 9000, 1000)


def test_every_setting_is_documented_and_nothing_else_reads_the_environment() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    for name in ENVIRONMENT_VARIABLES:
        assert f"`{name}`" in doc, f"{name} is not documented in docs/settings.md"
    documented = set(re.findall(r"`(PHENOSYNC_[A-Z_]+)`", doc))
    assert documented - {"PHENOSYNC_TEST_POSTGRES_URL"} <= set(ENVIRONMENT_VARIABLES)
    for package in ("server", "sync", "schemas", "exports"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "settings.py" and package == "server":
                continue
            assert "os.environ" not in path.read_text(), f"{path} reads the environment"
