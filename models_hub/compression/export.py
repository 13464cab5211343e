"""torch to ONNX, with a parity check against the torch model.

The exporter is chosen deliberately. torch 2.13 defaults to the dynamo exporter, which
writes the weights to an external data file next to the graph and took 3.4 s on a small
CNN here where the TorchScript exporter took 0.19 s. Triad's artifacts must be one
self-contained file (it is hashed, signed and shipped), so the TorchScript exporter is the
default; `exporter="dynamo"` is kept for models it cannot trace, and its external data
are folded back into the single file.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models_hub.compression.errors import CompressionError
from models_hub.compression.io import torch_forward

EXPORTERS = ("torchscript", "dynamo")
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
# Outputs may differ from torch's by float rounding only.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    samples: int

    def as_dict(self) -> dict[str, float | int]:
        return {"max_abs_diff": self.max_abs_diff, "samples": self.samples}


def export_onnx(
    module: nn.Module,
    sample_shape: tuple[int, ...],
    path: str | Path,
    exporter: str = "torchscript",
) -> Path:
    """Write `module` as a single-file ONNX model with a free batch dimension."""
    if exporter not in EXPORTERS:
        raise CompressionError(
            f"unknown exporter '{exporter}'; one of {', '.join(EXPORTERS)}", "exporter"
        )
    path = Path(path)
    example = (torch.zeros((1, *sample_shape), dtype=torch.float32),)
    module = module.eval()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo; see the docstring.
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                _export_torchscript(module, example, path)
            else:
                _export_dynamo(module, example, path)
    except CompressionError:
        raise
    except Exception as error:
        raise CompressionError(
            f"export to ONNX failed: {error}".splitlines()[0], "model"
        ) from error
    return path


def _export_torchscript(module: nn.Module, example: tuple[torch.Tensor], path: Path) -> None:
    torch.onnx.export(
        module,
        example,
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )


def _export_dynamo(module: nn.Module, example: tuple[torch.Tensor], path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / "model.onnx"
        torch.onnx.export(
            module,
            example,
            str(staged),
            dynamo=True,
            opset_version=max(OPSET, 18),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
        model = onnx.load(str(staged), load_external_data=True)
    onnx.save_model(model, str(path), save_as_external_data=False)


def check_parity(module: nn.Module, onnx_path: str | Path, x: np.ndarray) -> Parity:
    """Run torch and onnxruntime on `x`; refuse the export if they disagree."""
    expected = torch_forward(module, x)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = np.concatenate(
        [session.run(None, {name: x[i : i + 256]})[0] for i in range(0, len(x), 256)]
    )
    diff = np.abs(got - expected)
    if not np.all(diff <= PARITY_ATOL + PARITY_RTOL * np.abs(expected)):
        raise CompressionError(
            f"the exported ONNX model's outputs differ from torch's by up to {diff.max():.3g}",
            "model",
        )
    return Parity(float(diff.max()), len(x))
