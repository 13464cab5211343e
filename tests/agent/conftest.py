"""Fixtures for the edge agent's tests: no Django, no database, no network but loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .standin import StandInControlPlane


@pytest.fixture
def control_plane() -> Iterator[StandInControlPlane]:
    plane = StandInControlPlane()
    yield plane
    plane.hang_s = 0.0
    plane.stop()
