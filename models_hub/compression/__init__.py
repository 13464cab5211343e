"""The model compression engine: pure Python (torch, onnx, onnxruntime, pymoo), no Django.

`compress` applies a recipe (`parse_recipe`) to a model and measures the original and
every variant on the same data; `inspect_model` validates a model file for the registry.
"""

from models_hub.compression.data import Data, load_data
from models_hub.compression.errors import CompressionCancelled, CompressionError
from models_hub.compression.measure import DEFAULT_DEVICE_PROFILES, DeviceProfile
from models_hub.compression.pipeline import (
    PARAMETERS,
    REPORT_FORMAT,
    CompressOptions,
    ModelInfo,
    check_parameters,
    compress,
    inspect_model,
)
from models_hub.compression.recipes import STEPS, Recipe, parse_recipe

__all__ = [
    "DEFAULT_DEVICE_PROFILES",
    "PARAMETERS",
    "REPORT_FORMAT",
    "STEPS",
    "CompressOptions",
    "CompressionCancelled",
    "CompressionError",
    "Data",
    "DeviceProfile",
    "ModelInfo",
    "Recipe",
    "check_parameters",
    "compress",
    "inspect_model",
    "load_data",
    "parse_recipe",
]
