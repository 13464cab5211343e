"""The agent's state directory and its private JSON files (credentials live there)."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_agent.manifest import TrustStore

log = logging.getLogger(__name__)

STATE_DIR_ENV = "TRIAD_AGENT_STATE_DIR"
AGENT_STATE_FILE = "agent.json"
SPOOL_FILE = "spool.sqlite3"


class StateError(Exception):
    """The state file is missing or unreadable; the message tells the operator what to do."""


@dataclass
class AgentState:
    """What enrollment leaves behind: enough to heartbeat without the token again."""

    server: str
    device_id: str
    credential: str
    heartbeat_interval_s: float
    hardware: dict[str, Any] = field(default_factory=dict)
    tier: str = "edge"
    # The pinned model-signing key ({algorithm, key_id, public_key}); None in state files
    # from before signed rollouts, whose agents refuse every model order until re-enrolled.
    signing: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def trust_store(self) -> TrustStore:
        """The keys model orders must be signed with; empty (trust nothing) if none is pinned."""
        if self.signing is None:
            return TrustStore()
        try:
            return TrustStore.from_signing_json(self.signing)
        except ValueError as exc:
            log.error("the pinned signing key in the state file is unusable: %s", exc)
            return TrustStore()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentState:
        try:
            return cls(
                server=str(data["server"]),
                device_id=str(data["device_id"]),
                credential=str(data["credential"]),
                heartbeat_interval_s=float(data["heartbeat_interval_s"]),
                hardware=dict(data.get("hardware") or {}),
                tier=str(data.get("tier") or "edge"),
                signing=dict(data["signing"]) if data.get("signing") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state file is incomplete or malformed: {exc!r}") from exc


def default_state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".triad-agent"


def ensure_private_dir(directory: Path) -> Path:
    """Create the state directory readable by its owner only (it holds credentials)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600.

    The temporary file is created with 0600 from the start (not chmod-ed afterwards), so the
    credential is never world-readable, not even for an instant; ``os.replace`` makes the
    switch atomic so a crash leaves either the old file or the new one, never half of one.
    """
    ensure_private_dir(path.parent)
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # A permissive umask cannot widen 0600, but a stale tmp file could be wider.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Persist the rename itself; without it a power cut can resurrect the old file.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise StateError(f"{path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise StateError(f"{path} does not hold a JSON object")
    return data


def is_private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def load_agent_state(state_dir: Path) -> AgentState:
    path = state_dir / AGENT_STATE_FILE
    try:
        return AgentState.from_json(read_json(path))
    except StateError as exc:
        raise StateError(f"{exc}; enroll first with `python -m edge_agent enroll`") from exc


def save_agent_state(state_dir: Path, state: AgentState) -> Path:
    path = state_dir / AGENT_STATE_FILE
    write_private_json(path, state.to_json())
    return path


class AgentStateFile:
    """The state file of a running agent, which several threads update field by field.

    The runner remembers a new heartbeat interval while the reconciler pins a rotated key;
    each update starts from the latest state, so neither undoes the other.
    """

    def __init__(self, state_dir: Path, state: AgentState) -> None:
        self._state_dir = state_dir
        self._state = state
        self._lock = threading.Lock()

    @property
    def state(self) -> AgentState:
        return self._state

    def update(self, **changes: Any) -> AgentState:
        with self._lock:
            self._state = replace(self._state, **changes)
            save_agent_state(self._state_dir, self._state)
            return self._state
