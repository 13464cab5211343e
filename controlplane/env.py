"""Typed environment readers that fail fast.

A bad value stops the process at start-up with a message naming the variable, rather
than surfacing later as a confusing error deep inside a request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


class EnvError(ValueError):
    """An environment variable holds a value the settings cannot use."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_optional(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise EnvError(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EnvError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise EnvError(f"{name}={value} is below its minimum of {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


@dataclass(frozen=True)
class DatabaseUrl:
    engine: str
    name: str
    user: str = ""
    password: str = ""
    host: str = ""
    port: str = ""

    def as_django(self, pool_size: int = 0) -> dict[str, object]:
        config: dict[str, object] = {"ENGINE": self.engine, "NAME": self.name}
        if self.engine.endswith("postgresql"):
            config.update(
                USER=self.user,
                PASSWORD=self.password,
                HOST=self.host,
                PORT=self.port,
                # No persistent connections: under ASGI Django runs each request's sync code
                # on a thread of its own, so a per-thread persistent connection is never
                # reused and leaks until garbage collection; the server soon runs out of
                # connections. Django's docs say to pool instead under ASGI.
                CONN_MAX_AGE=0,
                CONN_HEALTH_CHECKS=True,
            )
            if pool_size:
                # Each server process shares at most `pool_size` connections between its
                # requests (the heartbeat path must not pay a connect per request); when all
                # are busy a request waits for one, for 10 s at most.
                config["OPTIONS"] = {
                    "pool": {"min_size": min(2, pool_size), "max_size": pool_size, "timeout": 10}
                }
        else:
            # SQLite serialises writers; wait for the lock instead of failing at once, and
            # use WAL so the UI's readers never block the heartbeat writers.
            # A file, not memory, so that servers and workers started by the tests share it.
            test_file = Path(self.name).with_name(Path(self.name).stem + "-test.sqlite3")
            config["TEST"] = {"NAME": str(test_file)}
            config["OPTIONS"] = {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        return config


def parse_database_url(name: str, url: str, base_dir: Path) -> DatabaseUrl:
    """Parse `sqlite:///relative/or/absolute.db` or `postgres://user:pw@host:port/db`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") and not parts.netloc else parts.path
        if not path:
            raise EnvError(f"{name}={url!r} names no SQLite file")
        file = Path(path) if Path(path).is_absolute() else base_dir / path
        return DatabaseUrl(engine="django.db.backends.sqlite3", name=str(file))
    if parts.scheme in {"postgres", "postgresql", "postgresql+psycopg"}:
        db = parts.path.lstrip("/")
        if not db:
            raise EnvError(f"{name}={url!r} names no database")
        return DatabaseUrl(
            engine="django.db.backends.postgresql",
            name=unquote(db),
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            host=parts.hostname or "",
            port=str(parts.port or ""),
        )
    raise EnvError(f"{name}={url!r}: scheme must be sqlite:// or postgres://")


def require_url(name: str, url: str | None, schemes: set[str]) -> str | None:
    if url is None:
        return None
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        raise EnvError(f"{name}={url!r}: scheme must be one of {sorted(schemes)}")
    return url
