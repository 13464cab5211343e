"""Built-in tasks, so that the pipeline is real without downloading anything.

- ``digits``: scikit-learn's bundled copy of the UCI handwritten digits (1,797 greyscale
  8x8 images of the digits 0 to 9, 4-bit intensities), enlarged to 16x16 by bilinear
  interpolation. A stratified 70/30 split: 1,257 training and 540 test images. It is a
  small, easy data set; it says nothing about photographs or cameras.
- ``textures``: 32x32 greyscale patches cut from eight pictures that scikit-image ships
  (three textures: brick, grass, gravel; five scenes: moon surface, camera man, coins, a
  printed page, a coffee cup); the class is the picture a patch came from. Training
  patches come from the left 70% of each picture, test patches from the right 30%, so no
  test pixel was seen in training. 300 training and 100 test patches per picture. It tests
  texture and local structure, not object recognition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models_hub.compression.data import Data
from models_hub.compression.errors import CompressionError


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    class_names: tuple[str, ...]
    train: Data
    test: Data

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.train.sample_shape


def digits(seed: int = 0) -> Task:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False).numpy()
    x = (x - 0.5) / 0.5
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels, test_size=0.3, stratify=labels, random_state=seed
    )
    return Task(
        "digits",
        "UCI handwritten digits bundled with scikit-learn, 16x16 greyscale, 10 classes",
        tuple(str(d) for d in range(10)),
        Data(np.ascontiguousarray(x_train), y_train),
        Data(np.ascontiguousarray(x_test), y_test),
    )


TEXTURE_SOURCES = ("brick", "grass", "gravel", "moon", "camera", "coins", "page", "coffee")
PATCH = 32
TRAIN_PER_CLASS = 300
TEST_PER_CLASS = 100
TRAIN_FRACTION = 0.7


def textures(seed: int = 0) -> Task:
    import skimage.data

    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"x_train": [], "x_test": [], "y_train": [], "y_test": []}
    for label, name in enumerate(TEXTURE_SOURCES):
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
        if image.ndim == 3:
            image = image[..., :3].mean(axis=2)
        image = image / 255.0
        split = int(image.shape[1] * TRAIN_FRACTION)
        for part, region, count in (
            ("train", image[:, :split], TRAIN_PER_CLASS),
            ("test", image[:, split:], TEST_PER_CLASS),
        ):
            parts[f"x_{part}"].append(_patches(region, count, rng))
            parts[f"y_{part}"].append(np.full(count, label, dtype=np.int64))
    x_train, x_test = (
        ((np.concatenate(parts[k]) - 0.5) / 0.25)[:, None] for k in ("x_train", "x_test")
    )
    return Task(
        "textures",
        "32x32 greyscale patches of 8 scikit-image sample pictures; the class is the picture",
        TEXTURE_SOURCES,
        Data(np.ascontiguousarray(x_train, dtype=np.float32), np.concatenate(parts["y_train"])),
        Data(np.ascontiguousarray(x_test, dtype=np.float32), np.concatenate(parts["y_test"])),
    )


def _patches(image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    rows = rng.integers(0, image.shape[0] - PATCH + 1, count)
    cols = rng.integers(0, image.shape[1] - PATCH + 1, count)
    return np.stack([image[r : r + PATCH, c : c + PATCH] for r, c in zip(rows, cols, strict=True)])


TASKS = {"digits": digits, "textures": textures}


def load_task(name: str, seed: int = 0) -> Task:
    if name not in TASKS:
        raise CompressionError(f"unknown task '{name}'; one of {', '.join(TASKS)}", "task")
    return TASKS[name](seed)
