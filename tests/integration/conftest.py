"""Fixtures for tests that run the product's real processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import ROOT
from tests.integration.processes import PYTHON, Processes, processes_fixture

SEND_SWEEP = (
    "import django; django.setup(); "
    "from devices.tasks import sweep_offline_devices; print(sweep_offline_devices.delay().id)"
)


@dataclass
class Stack:
    """Which broker and channel layer the spawned processes use (the database is the test's).

    `redis`: Redis for both, as in production. `embedded`: no REDIS_URL, so the filesystem
    broker and the SQLite channel layer, as in the demo on a bare machine.
    """

    name: str
    env: dict[str, str]

    @property
    def matches_this_process(self) -> bool:
        return (self.name == "redis") == bool(settings.REDIS_URL)

    def send_sweep(self) -> str:
        """Queue a sweep on this stack's broker, from this process when it uses the same.

        Returns the task id, for `Processes.wait_task_succeeded`.
        """
        if self.matches_this_process:
            from devices.tasks import sweep_offline_devices

            return str(sweep_offline_devices.delay().id)
        sent = subprocess.run(
            [PYTHON, "-c", SEND_SWEEP],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        )
        return sent.stdout.strip().splitlines()[-1]


@pytest.fixture
def processes(tmp_path: Path, transactional_db: Any) -> Iterator[Processes]:
    # After the database fixture, so that teardown stops the processes before the
    # database is flushed under them.
    yield from processes_fixture(tmp_path)


@pytest.fixture(params=["redis", "embedded"])
def stack(request: pytest.FixtureRequest, subprocess_env: dict[str, str]) -> Stack:
    env = dict(subprocess_env)
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        return Stack("redis", env)
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    return Stack("embedded", env)


@pytest.fixture
def operator_login(operator: Any) -> tuple[str, str]:
    return operator.username, "correct-horse-battery"
