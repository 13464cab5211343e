"""Reading models: ONNX files, TorchScript archives, and torch models saved whole.

A torch model saved whole is a pickle, and unpickling can run code. It is loaded with
``weights_only=True``, trusting only torch's own layers and Triad's architectures
(`models_hub.compression.architectures`); a file that names any other class is refused
with the class named. `trust_pickle=True` (the CLI's ``--trust-pickle``, for your own
files) lifts that.
"""

from __future__ import annotations

import inspect
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models_hub.compression import architectures
from models_hub.compression.errors import CompressionError

FRAMEWORKS = ("onnx", "torch", "torchscript")


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: `shape` has None for a dimension the model leaves free."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    operators: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": [spec.as_dict() for spec in self.inputs],
            "outputs": [spec.as_dict() for spec in self.outputs],
        }


def detect_framework(path: str | Path, field: str = "model") -> str:
    """'torchscript', 'torch' (saved whole) or 'onnx', from the file's contents."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise CompressionError(f"a corrupt archive ({error})", field) from error
        if any("/code/" in name for name in names):
            return "torchscript"
        if any(name.endswith("data.pkl") for name in names):
            return "torch"
        raise CompressionError(
            "a zip archive that is neither a torch nor a TorchScript model", field
        )
    return "onnx"


# --- ONNX ---------------------------------------------------------------------------------


def load_onnx(path: str | Path, field: str = "model") -> onnx.ModelProto:
    """Parse, check, and prove that onnxruntime can run the model (every operator known)."""
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf raises DecodeError, RuntimeError, ...
        raise CompressionError(f"not an ONNX model, or a corrupt one ({error})", field) from error
    if not model.graph.node:
        raise CompressionError("not an ONNX model: the file holds no graph", field)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        first_line = str(error).strip().splitlines()[0]
        raise CompressionError(f"an invalid ONNX model ({first_line})", field) from error
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise CompressionError(
            f"onnxruntime cannot run this model: {_short(error)}", field
        ) from error
    return model


def onnx_signature(model: onnx.ModelProto) -> Signature:
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(value) for value in model.graph.input if value.name not in initializers)
    outputs = tuple(_spec(value) for value in model.graph.output)
    operators = tuple(sorted({node.op_type for node in model.graph.node}))
    return Signature(inputs, outputs, operators)


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?"
    return TensorSpec(value.name, shape, dtype)


def check_input_shape(signature: Signature, sample_shape: tuple[int, ...], field: str) -> None:
    """Refuse data whose samples do not fit the model's (single) input."""
    if len(signature.inputs) != 1:
        raise CompressionError(
            f"models with one input are supported, this one has {len(signature.inputs)}", "model"
        )
    expected = signature.inputs[0].shape[1:]
    fits = len(expected) == len(sample_shape) and all(
        want is None or want == got for want, got in zip(expected, sample_shape, strict=True)
    )
    if not fits:
        shown = ["?" if dim is None else dim for dim in expected]
        raise CompressionError(
            f"samples of shape {list(sample_shape)} do not match the model's input "
            f"'{signature.inputs[0].name}' of shape [batch, {', '.join(map(str, shown))}]",
            field,
        )


# --- torch ---------------------------------------------------------------------------------


def load_torch(path: str | Path, field: str = "model", trust_pickle: bool = False) -> nn.Module:
    """A torch model saved whole (`torch.save(model)`) or a TorchScript archive, in eval mode."""
    framework = detect_framework(path, field)
    if framework == "onnx":
        raise CompressionError("expected a torch model, got a file that is not one", field)
    try:
        if framework == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu")
        elif trust_pickle:
            module = torch.load(str(path), map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(trusted_classes()):
                module = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise CompressionError(
            f"cannot load the torch model: {_untrusted(error)}", field
        ) from error
    if not isinstance(module, nn.Module):
        raise CompressionError(
            f"the file holds a {type(module).__name__}, not a model; save the model whole "
            "with torch.save(model, path), or as TorchScript",
            field,
        )
    return module.eval()


def trusted_classes() -> list[Any]:
    """Torch's layers and Triad's architectures: what a whole-model pickle may name."""
    classes: list[Any] = [torch.Size]
    for module in (nn, architectures):
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, nn.Module) or value is architectures.StageSpec:
                classes.append(value)
    return classes


def _untrusted(error: Exception) -> str:
    text = str(error)
    marker = "Unsupported global: GLOBAL "
    if marker in text:
        name = text.split(marker, 1)[1].split()[0]
        return (
            f"it names the class {name}, which is not a trusted layer; save it as TorchScript "
            "or ONNX (or, for your own file, pass --trust-pickle)"
        )
    return _short(error)


def _short(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


def torch_forward(module: nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """The module's outputs for `x`, in batches, as one float32 array."""
    outputs = []
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in range(0, len(x), batch):
            outputs.append(module(torch.from_numpy(x[start : start + batch])).numpy())
    return np.concatenate(outputs).astype(np.float32, copy=False)
