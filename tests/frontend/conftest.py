"""Console page tests: `page` runs over a `PageRoleTests` subclass's `pages`."""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    pages = getattr(metafunc.cls, "pages", None)
    if pages and "page" in metafunc.fixturenames:
        metafunc.parametrize("page", pages)
