"""Models to deploy in the rollout tests: `benchmarks.synthetic`'s linear classifiers."""

from __future__ import annotations

from benchmarks.synthetic import CLASSES, INPUTS, linear_classifier

__all__ = ["CLASSES", "INPUTS", "linear_classifier"]
