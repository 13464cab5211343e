"""Settings fail fast, naming the variable, on values they cannot use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.env import EnvError, env_bool, env_int, parse_database_url

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_and_int(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_FLAG", "yes")
    assert env_bool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(EnvError, match="X_FLAG"):
        env_bool("X_FLAG", False)
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(EnvError, match="X_NUM"):
        env_int("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(EnvError, match="minimum"):
        env_int("X_NUM", 1, minimum=1)


def test_database_urls() -> None:
    pg = parse_database_url("DATABASE_URL", "postgres://u:p%40ss@db:6543/fleet", ROOT)
    assert (pg.engine, pg.name, pg.user, pg.password, pg.host, pg.port) == (
        "django.db.backends.postgresql",
        "fleet",
        "u",
        "p@ss",
        "db",
        "6543",
    )
    lite = parse_database_url("DATABASE_URL", "sqlite:///var/x.sqlite3", ROOT)
    assert lite.name == str(ROOT / "var" / "x.sqlite3")
    absolute = parse_database_url("DATABASE_URL", "sqlite:////tmp/x.sqlite3", ROOT)
    assert absolute.name == "/tmp/x.sqlite3"
    for bad in ("mysql://h/db", "postgres://h/", "sqlite://"):
        with pytest.raises(EnvError, match="DATABASE_URL"):
            parse_database_url("DATABASE_URL", bad, ROOT)


@pytest.mark.parametrize(
    "name,value",
    [
        ("REDIS_URL", "http://localhost"),
        ("TRIAD_HEARTBEAT_INTERVAL_S", "soon"),
        ("DJANGO_DEBUG", "perhaps"),
        ("DATABASE_URL", "oracle://x/y"),
        ("TRIAD_MAX_MODEL_BYTES", "256MiB"),
        ("TRIAD_MAX_MODEL_BYTES", "1000"),
    ],
)
def test_bad_setting_stops_start_up(name: str, value: str) -> None:
    env = {**os.environ, name: value}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert name in result.stderr
