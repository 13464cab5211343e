"""Fixtures of the browser tests that run the real server: its processes, the server on
the test's database (`env`, which a module may override), and headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_fleet_live import CHROMIUM, CHROMIUM_ARGS
from tests.integration.processes import Processes, Server, processes_fixture


@pytest.fixture
def processes(tmp_path: Path, transactional_db: Any) -> Iterator[Processes]:
    # After the database fixture, so the processes stop before the database is flushed.
    yield from processes_fixture(tmp_path)


@pytest.fixture
def env(subprocess_env: dict[str, str]) -> dict[str, str]:
    """The server's environment; modules that need more (a media root...) override it."""
    return subprocess_env


@pytest.fixture
def server(processes: Processes, env: dict[str, str]) -> Server:
    server = processes.server(env)
    processes.wait_server_ready(server)
    return server


@pytest.fixture
def browser(server: Server) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
