"""Data files: an ``.npz`` archive with the input array ``x`` (first axis: samples) and,
where labels exist, ``y`` (one integer class per sample).

Loaded with ``allow_pickle=False``: a data file can never run code.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models_hub.compression.errors import CompressionError

# An evaluation or calibration set larger than this is refused: it would be held in memory.
MAX_SAMPLES = 200_000


@dataclass(frozen=True)
class Data:
    """Inputs `x` (float32, samples first) and optional integer labels `y`."""

    x: np.ndarray
    y: np.ndarray | None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    def take(self, count: int) -> Data:
        """The first `count` samples (for a subset whose order is already random)."""
        return Data(self.x[:count], None if self.y is None else self.y[:count])

    def sample(self, count: int, seed: int = 0) -> Data:
        """`count` samples drawn at random (seeded), in their original order; all of them
        when there are no more. Never the first `count`: a data set sorted by class would
        then calibrate or rank on one class only."""
        if count >= len(self):
            return self
        index = np.sort(np.random.default_rng(seed).choice(len(self), count, replace=False))
        return Data(self.x[index], None if self.y is None else self.y[index])

    def save(self, path: str | Path) -> None:
        arrays = {"x": self.x} if self.y is None else {"x": self.x, "y": self.y}
        np.savez(path, **arrays)  # type: ignore[arg-type]


def load_data(path: str | Path, field: str, require_labels: bool = False) -> Data:
    """Read and check a data file; refuse it with `field` named if it is unusable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if "x" not in names:
                raise CompressionError(
                    f"the data file has no array named 'x' (it has: {sorted(names) or 'none'})",
                    field,
                )
            x = archive["x"]
            y = archive["y"] if "y" in names else None
    except CompressionError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise CompressionError(f"not a readable .npz data file ({error})", field) from error
    return check_data(x, y, field, require_labels)


def check_data(
    x: np.ndarray, y: np.ndarray | None, field: str, require_labels: bool = False
) -> Data:
    if x.dtype == object or not (
        np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
    ):
        raise CompressionError(f"'x' must be a numeric array, not {x.dtype}", field)
    if x.ndim < 2:
        raise CompressionError(
            f"'x' must have a sample axis and at least one more, not shape {x.shape}", field
        )
    if x.shape[0] == 0:
        raise CompressionError("the data set is empty (x has 0 samples)", field)
    if x.shape[0] > MAX_SAMPLES:
        raise CompressionError(f"at most {MAX_SAMPLES} samples, not {x.shape[0]}", field)
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise CompressionError("'x' holds NaN or infinite values", field)
    if y is None:
        if require_labels:
            raise CompressionError("labels are needed: the data file has no array 'y'", field)
        return Data(np.ascontiguousarray(x), None)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise CompressionError(
            f"'y' must hold one label per sample: shape ({x.shape[0]},), not {y.shape}", field
        )
    is_integer = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and bool(np.all(np.mod(y, 1) == 0))
    )
    if not is_integer:
        raise CompressionError(f"'y' must hold integer class labels, not {y.dtype}", field)
    if (y < 0).any():
        raise CompressionError("'y' holds negative class labels", field)
    return Data(np.ascontiguousarray(x), y.astype(np.int64))


def check_labels(data: Data, num_classes: int, field: str) -> None:
    """Refuse labels the model cannot predict (a mislabelled data set)."""
    if data.y is not None and data.y.size and int(data.y.max()) >= num_classes:
        raise CompressionError(
            f"'y' holds class {int(data.y.max())}, but the model has {num_classes} outputs "
            f"(classes 0 to {num_classes - 1})",
            field,
        )
