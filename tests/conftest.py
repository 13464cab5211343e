"""Shared fixtures. Tests that need Redis skip without REDIS_URL; CI forbids any skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI sets TRIAD_FORBID_SKIPS so that a missing browser or service fails the run
    # instead of quietly skipping the tests that need it.
    if os.environ.get("TRIAD_FORBID_SKIPS") == "1" and _skipped:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"TRIAD_FORBID_SKIPS: {len(_skipped)} test(s) skipped:", red=True)
            for nodeid in _skipped:
                reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL (a real Redis)")
    return url


@pytest.fixture
def roles(db: Any) -> None:
    from django.core.management import call_command

    call_command("bootstrap")


def _user(username: str, group: str | None) -> Any:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username=username, password="correct-horse-battery")
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def operator(roles: None) -> Any:
    return _user("op", "operator")


@pytest.fixture
def admin_user(roles: None) -> Any:
    return _user("boss", "admin")


@pytest.fixture
def nobody(roles: None) -> Any:
    """A logged-in user with no role."""
    return _user("nobody", None)


@pytest.fixture
def operator_client(operator: Any) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(operator)
    return client


@pytest.fixture
def enrollment_secret(db: Any) -> str:
    from datetime import timedelta

    from devices.actions import create_enrollment_token

    _, secret = create_enrollment_token(created_by=None, max_uses=5, ttl=timedelta(hours=1))
    return secret


HARDWARE: dict[str, Any] = {
    "cpu_cores": 4,
    "memory_mb": 4096,
    "gflops": 25.0,
    "accelerator": "",
    "power_idle_w": 3.0,
    "power_busy_w": 9.0,
    "cost_per_hour": 0.0,
}


@pytest.fixture
def enrolled(enrollment_secret: str) -> tuple[Any, str]:
    """A device and its credential, enrolled through the action."""
    from devices.actions import HardwareProfile, enroll_device

    return enroll_device(
        token=enrollment_secret, name="cam-1", tier="end", hardware=HardwareProfile(**HARDWARE)
    )


@pytest.fixture
def agent_client(enrolled: tuple[Any, str]) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {enrolled[1]}")
    return client


@pytest.fixture
def subprocess_env(transactional_db: Any) -> Iterator[dict[str, str]]:
    """Environment for server/worker subprocesses that share this test's database."""
    from django.db import connection

    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings"}
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        env["DATABASE_URL"] = f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    yield env
