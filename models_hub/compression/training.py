"""Training and fine-tuning, with or without knowledge distillation.

Distillation uses Hinton et al.'s loss (2015): the student matches the teacher's outputs
softened by a `temperature` T, weighted by `alpha` and scaled by T^2 so that its gradients
keep their size as T changes, plus (1 - alpha) times the cross-entropy with the labels.
Without labels, alpha is 1: the student learns from the teacher alone.

The defaults (T = 1, alpha = 0.5) are measured, not folklore: pruning the digits teacher
by half and fine-tuning for 10 epochs, three seeds, T = 1 matched plain fine-tuning seed
for seed (98.15, 97.96, 98.15%), while T = 2 lost 0.2 to 0.6 points and T = 4 more. A
student that starts from its teacher's own weights gains little from softened targets on
the same labelled data; distillation pays off where labels are few and unlabelled inputs
many, since the teacher labels them all (see tests/compression/test_distillation.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models_hub.compression.data import Data
from models_hub.compression.errors import CompressionCancelled, CompressionError


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 10
    learning_rate: float = 2e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class Distillation:
    teacher: nn.Module
    temperature: float = 1.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise CompressionError(f"must be between 0 and 1, not {self.alpha}", "parameters.alpha")
        if not 0.0 < self.temperature <= 100.0:
            raise CompressionError(
                f"must be above 0 and at most 100, not {self.temperature}", "parameters.temperature"
            )


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
    ) * (temperature**2)
    if labels is None or alpha >= 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


def train(
    model: nn.Module,
    data: Data,
    options: TrainOptions,
    distillation: Distillation | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> nn.Module:
    """Train `model` in place on `data` (labels, a teacher, or both) and return it in eval mode."""
    if data.y is None and distillation is None:
        raise CompressionError("training without a teacher needs labels ('y')", "calib")
    torch.manual_seed(options.seed)
    order_rng = np.random.default_rng(options.seed)
    x = torch.from_numpy(data.x)
    y = None if data.y is None else torch.from_numpy(data.y)
    teacher_logits = None
    if distillation is not None:
        with torch.inference_mode():
            teacher = distillation.teacher.eval()
            teacher_logits = torch.cat([teacher(x[i : i + 512]) for i in range(0, len(x), 512)])
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay
    )
    steps = options.epochs * max(1, -(-len(x) // options.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, options.learning_rate, total_steps=steps
    )
    for epoch in range(options.epochs):
        model.train()
        order = torch.from_numpy(order_rng.permutation(len(x)))
        total = 0.0
        for start in range(0, len(x), options.batch_size):
            if should_stop is not None and should_stop():
                raise CompressionCancelled
            index = order[start : start + options.batch_size]
            logits = model(x[index])
            labels = None if y is None else y[index]
            if distillation is None:
                assert labels is not None
                loss = F.cross_entropy(logits, labels)
            else:
                assert teacher_logits is not None
                loss = distillation_loss(
                    logits,
                    teacher_logits[index],
                    labels,
                    distillation.temperature,
                    distillation.alpha,
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        if on_epoch is not None:
            on_epoch(epoch + 1, total / len(x))
    return model.eval()


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat(
            [model.eval()(torch.from_numpy(x[i : i + 512])) for i in range(0, len(x), 512)]
        ).numpy()
