"""The rollout's arithmetic: phase sizes and the failure threshold."""

from __future__ import annotations

import pytest

from deployments.rollout import failures_exceed, phase_of_each, phase_sizes


@pytest.mark.parametrize(
    ("targets", "canary", "batch", "sizes"),
    [
        (5, 20, 50, [1, 3, 1]),
        (100, 10, 30, [10, 30, 30, 30]),
        (1, 10, 50, [1]),
        (3, 0, 100, [3]),
        (2, 100, 50, [2]),
        (10, 1, 100, [1, 9]),
        (0, 10, 50, []),
    ],
)
def test_phase_sizes(targets: int, canary: int, batch: int, sizes: list[int]) -> None:
    assert phase_sizes(targets, canary, batch) == sizes
    assert sum(sizes) == targets


def test_phase_of_each_follows_release_order() -> None:
    assert phase_of_each(5, 20, 50) == [0, 1, 1, 1, 2]


@pytest.mark.parametrize(
    ("failed", "released", "threshold", "exceeds"),
    [(0, 5, 0, False), (1, 5, 0, True), (1, 5, 20, False), (2, 5, 20, True), (0, 0, 0, False)],
)
def test_failures_exceed(failed: int, released: int, threshold: int, exceeds: bool) -> None:
    assert failures_exceed(failed, released, threshold) is exceeds
