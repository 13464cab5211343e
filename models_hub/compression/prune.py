"""Structured channel pruning with torch-pruning.

Whole channels (filters) are removed, with every layer that depends on them, so the
pruned model is a smaller dense model that any runtime speeds up, unlike unstructured
sparsity. `ratio` is the fraction of channels removed from each prunable layer, so 0.5
leaves about a quarter of a convolution's multiply-adds. The classifier's output layer is
never pruned (its outputs are the classes).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from models_hub.compression.data import Data
from models_hub.compression.errors import CompressionError

IMPORTANCES = ("magnitude", "l1", "taylor", "lamp", "fpgm", "random")
MAX_RATIO = 0.95


@dataclass(frozen=True)
class PruneOptions:
    ratio: float
    importance: str = "magnitude"
    ignored_layers: tuple[str, ...] = ()
    global_pruning: bool = False

    @classmethod
    def parse(cls, ratio: float, parameters: Mapping[str, Any]) -> PruneOptions:
        check_ratio(ratio)
        importance = parameters.get("importance", "magnitude")
        if importance not in IMPORTANCES:
            raise CompressionError(
                f"'{importance}' is not one of {', '.join(IMPORTANCES)}", "parameters.importance"
            )
        ignored = parameters.get("ignored_layers", [])
        if (
            not isinstance(ignored, Sequence)
            or isinstance(ignored, str)
            or not all(isinstance(name, str) for name in ignored)
        ):
            raise CompressionError("must be a list of layer names", "parameters.ignored_layers")
        global_pruning = parameters.get("global_pruning", False)
        if not isinstance(global_pruning, bool):
            raise CompressionError("must be true or false", "parameters.global_pruning")
        return cls(float(ratio), importance, tuple(ignored), global_pruning)


def check_ratio(ratio: object) -> None:
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, (int, float))
        or not 0.0 < ratio <= MAX_RATIO
    ):
        raise CompressionError(
            f"the pruning ratio must be above 0 and at most {MAX_RATIO}, not {ratio}", "recipe"
        )


def prune(
    model: nn.Module, sample_shape: tuple[int, ...], data: Data, options: PruneOptions
) -> nn.Module:
    """A pruned copy of `model`; the original is left as it was."""
    if isinstance(model, torch.jit.ScriptModule):
        raise CompressionError(
            "a TorchScript model cannot be pruned (its layers are compiled); "
            "upload the torch model saved whole",
            "model",
        )
    pruned = copy.deepcopy(model).eval()
    example = torch.zeros((1, *sample_shape))
    ignored = _ignored_layers(pruned, options.ignored_layers)
    try:
        pruner = tp.pruner.MetaPruner(
            pruned,
            example,
            importance=_importance(options.importance),
            pruning_ratio=options.ratio,
            global_pruning=options.global_pruning,
            ignored_layers=ignored,
        )
        if options.importance == "taylor":
            _accumulate_gradients(pruned, data)
        pruner.step()
    except CompressionError:
        raise
    except Exception as error:
        raise CompressionError(f"pruning failed: {error}".splitlines()[0], "model") from error
    pruned.zero_grad(set_to_none=True)
    return pruned.eval()


def _ignored_layers(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    layers = dict(model.named_modules())
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise CompressionError(
            f"no layer named {', '.join(unknown)} in the model", "parameters.ignored_layers"
        )
    ignored = [layers[name] for name in names]
    output_layer = _output_layer(model)
    if output_layer is not None:
        ignored.append(output_layer)
    return ignored


def _output_layer(model: nn.Module) -> nn.Module | None:
    """The last linear or convolutional layer: it produces the classes."""
    last = None
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = module
    return last


def _importance(name: str) -> Any:
    return {
        "magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
        "lamp": lambda: tp.importance.LAMPImportance(p=2),
        "fpgm": lambda: tp.importance.FPGMImportance(p=2),
        "random": lambda: tp.importance.RandomImportance(),
    }[name]()


def _accumulate_gradients(model: nn.Module, data: Data) -> None:
    """Taylor importance needs gradients of the loss; labels, or else the model's own
    predictions, serve as targets."""
    batch = data.sample(256)
    logits = model(torch.from_numpy(batch.x))
    targets = torch.from_numpy(batch.y) if batch.y is not None else logits.argmax(1).detach()
    F.cross_entropy(logits, targets).backward()


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
