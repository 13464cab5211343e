"""Console page tests: `page` runs over a `PageRoleTests` subclass's `pages`; the model hub
tests share its files and a MEDIA_ROOT of their own; the rollout tests a signing key ring of
their own too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    pages = getattr(metafunc.cls, "pages", None)
    if pages and "page" in metafunc.fixturenames:
        metafunc.parametrize("page", pages)


@pytest.fixture(scope="session")
def hub_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.frontend.hub_helpers import hub_files

    return hub_files(tmp_path_factory)


@pytest.fixture
def hub_media(settings: Any, tmp_path: Path) -> Path:
    """A MEDIA_ROOT of the test's own, so that "nothing stored" can be checked by listing it."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def signing_dir(settings: Any, tmp_path: Path) -> Path:
    """A signing key ring of the test's own (made the first time a manifest is signed)."""
    settings.TRIAD_SIGNING_KEY_DIR = tmp_path / "signing"
    return Path(settings.TRIAD_SIGNING_KEY_DIR)
