"""Post-training int8 quantisation with onnxruntime.

Data types are chosen by measurement on this machine's x86 CPU (ResNet-18-style at
224x224, one thread): unsigned 8-bit activations with signed 8-bit per-channel weights
(U8S8) in QDQ form ran 3.0x faster than fp32, because onnxruntime fuses those QDQ
patterns into integer convolutions. Signed activations (S8S8, quantize_static's
defaults) left most convolutions in fp32 and barely beat it; dynamic quantisation of a
CNN ran 1.5x *slower* than fp32 (activations are quantised at run time, convolutions
become ConvInteger). So static U8S8 is the default, dynamic is meant for linear and
transformer models, and the pipeline measures every variant and warns about, or with
`refuse_slower` refuses, one that is slower than its original.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from models_hub.compression.data import Data
from models_hub.compression.errors import CompressionError

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
QUANT_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
MAX_CALIBRATION_SAMPLES = 2048
# Operators whose dynamic quantisation pays off (weights read once, activations small).
DYNAMIC_OP_TYPES = ["MatMul", "Gemm", "Attention", "LSTM", "GRU"]


@dataclass(frozen=True)
class StaticOptions:
    calibration: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    format: str = "qdq"
    calibration_samples: int = 256
    percentile: float = 99.999

    @classmethod
    def parse(cls, parameters: Mapping[str, Any]) -> StaticOptions:
        options = cls(**{k: v for k, v in parameters.items() if k in cls.__dataclass_fields__})
        _choice(options.calibration, CALIBRATION_METHODS, "parameters.calibration")
        _choice(options.activation_type, QUANT_TYPES, "parameters.activation_type")
        _choice(options.weight_type, QUANT_TYPES, "parameters.weight_type")
        _choice(options.format, FORMATS, "parameters.format")
        if not isinstance(options.per_channel, bool):
            raise CompressionError("must be true or false", "parameters.per_channel")
        samples = options.calibration_samples
        if (
            isinstance(samples, bool)
            or not isinstance(samples, int)
            or not 1 <= samples <= MAX_CALIBRATION_SAMPLES
        ):
            raise CompressionError(
                f"must be a whole number from 1 to {MAX_CALIBRATION_SAMPLES}",
                "parameters.calibration_samples",
            )
        if (
            not isinstance(options.percentile, (int, float))
            or not 90.0 <= options.percentile < 100.0
        ):
            raise CompressionError("must be at least 90 and below 100", "parameters.percentile")
        return options


def _choice(value: object, choices: Mapping[str, object], field: str) -> None:
    if value not in choices:
        raise CompressionError(f"'{value}' is not one of {', '.join(choices)}", field)


class ArrayReader(CalibrationDataReader):
    """Feeds calibration samples one at a time, as the model will see them."""

    def __init__(self, input_name: str, x: np.ndarray) -> None:
        self.input_name = input_name
        self.samples: Iterator[np.ndarray] = iter(x)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self.samples, None)
        return None if sample is None else {self.input_name: sample[None, ...]}


def quantize_int8_static(
    source: Path, target: Path, calib: Data, options: StaticOptions
) -> list[str]:
    """Write the statically quantised model; return warnings for the report."""
    notes: list[str] = []
    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    x = calib.sample(options.calibration_samples).x
    if len(x) < 32:
        notes.append(f"only {len(x)} calibration samples: activation ranges may be unreliable")
    with tempfile.TemporaryDirectory() as scratch:
        prepared = _preprocess(source, Path(scratch) / "prepared.onnx", notes)
        try:
            quantize_static(
                str(prepared),
                str(target),
                ArrayReader(input_name, x),
                quant_format=FORMATS[options.format],
                per_channel=options.per_channel,
                activation_type=QUANT_TYPES[options.activation_type],
                weight_type=QUANT_TYPES[options.weight_type],
                calibrate_method=CALIBRATION_METHODS[options.calibration],
                extra_options={"CalibPercentile": options.percentile},
            )
        except Exception as error:
            raise CompressionError(
                f"static quantisation failed: {error}".splitlines()[0], "model"
            ) from error
    if options.activation_type == "int8" and options.format == "qdq":
        notes.append(
            "signed int8 activations: onnxruntime on x86 keeps many QDQ convolutions in "
            "fp32 with them; uint8 activations are usually faster"
        )
    return notes


def quantize_int8_dynamic(source: Path, target: Path, parameters: Mapping[str, Any]) -> list[str]:
    notes: list[str] = []
    weight_type = parameters.get("weight_type", "int8")
    _choice(weight_type, QUANT_TYPES, "parameters.weight_type")
    per_channel = parameters.get("per_channel", False)
    if not isinstance(per_channel, bool):
        raise CompressionError("must be true or false", "parameters.per_channel")
    operators = {
        node.op_type for node in onnx.load(str(source), load_external_data=False).graph.node
    }
    if "Conv" in operators:
        notes.append(
            "dynamic quantisation leaves convolutions in fp32 (quantising them at run time "
            "is slower than fp32); use int8-static for convolutional models"
        )
    with tempfile.TemporaryDirectory() as scratch:
        prepared = _preprocess(source, Path(scratch) / "prepared.onnx", notes)
        try:
            quantize_dynamic(
                str(prepared),
                str(target),
                weight_type=QUANT_TYPES[weight_type],
                per_channel=per_channel,
                op_types_to_quantize=DYNAMIC_OP_TYPES,
            )
        except Exception as error:
            raise CompressionError(
                f"dynamic quantisation failed: {error}".splitlines()[0], "model"
            ) from error
    return notes


def _preprocess(source: Path, target: Path, notes: list[str]) -> Path:
    """Shape inference and graph optimisation (folds batch norms into convolutions), as
    onnxruntime recommends before quantising; skipped with a note where it fails."""
    try:
        quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
    except Exception as error:  # symbolic shape inference gives up on some graphs
        logging.getLogger(__name__).warning("quantisation pre-processing skipped: %s", error)
        notes.append(f"pre-processing skipped ({type(error).__name__}); quantised as exported")
        return source
    return target
