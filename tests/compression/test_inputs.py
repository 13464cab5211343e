"""Bad models and data files are refused with the field named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from models_hub.compression import CompressionError, inspect_model, load_data
from models_hub.compression.io import load_torch


def refused(field: str, call, *args, **kwargs) -> CompressionError:  # type: ignore[no-untyped-def]
    with pytest.raises(CompressionError) as caught:
        call(*args, **kwargs)
    assert caught.value.field == field, caught.value
    return caught.value


def test_an_onnx_model_is_described(files: dict[str, Path]) -> None:
    info = inspect_model(files["model.onnx"])
    assert info.framework == "onnx"
    assert info.signature["inputs"][0]["shape"] == [None, 1, 16, 16]
    assert info.signature["outputs"][0]["shape"] == [None, 10]
    assert info.params > 50_000 and info.flops > 1_000_000
    assert "Conv" in info.operators


def test_torch_and_torchscript_models_are_described_with_a_sample_shape(
    files: dict[str, Path],
) -> None:
    whole = inspect_model(files["model.pt"], (1, 16, 16))
    script = inspect_model(files["model.ts"], (1, 16, 16))
    assert (whole.framework, script.framework) == ("torch", "torchscript")
    assert whole.params == script.params == inspect_model(files["model.onnx"]).params
    refused("input_shape", inspect_model, files["model.pt"])


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("hello, this is not a model")
    assert "not an ONNX model" in refused("model", inspect_model, path).message


def test_a_truncated_onnx_file_is_refused(tmp_path: Path, files: dict[str, Path]) -> None:
    path = tmp_path / "cut.onnx"
    path.write_bytes(files["model.onnx"].read_bytes()[:5000])
    refused("model", inspect_model, path)


def test_an_operator_onnxruntime_lacks_is_refused(tmp_path: Path) -> None:
    node = helper.make_node("Teleport", ["x"], ["y"], domain="org.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("org.example", 1)]
    )
    path = tmp_path / "teleport.onnx"
    onnx.save(model, path)
    assert "onnxruntime cannot run" in refused("model", inspect_model, path).message


def test_an_input_shape_that_does_not_fit_is_refused(files: dict[str, Path]) -> None:
    assert (
        "do not match"
        in refused("input_shape", inspect_model, files["model.onnx"], (3, 16, 16)).message
    )
    refused("input_shape", inspect_model, files["model.pt"], (3, 16, 16))


def test_a_pickle_naming_an_untrusted_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save(Untrusted(), path)
    message = refused("model", load_torch, path).message
    assert "Untrusted" in message and "not a trusted layer" in message
    assert isinstance(load_torch(path, trust_pickle=True), Untrusted)


def test_a_state_dict_is_not_a_model(tmp_path: Path, digits_teacher: torch.nn.Module) -> None:
    path = tmp_path / "weights.pt"
    torch.save(digits_teacher.state_dict(), path)
    assert "not a model" in refused("model", load_torch, path).message


class Untrusted(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"x": np.zeros((0, 1, 16, 16), np.float32)}, "empty"),
        ({"y": np.zeros(3, np.int64)}, "no array named 'x'"),
        ({"x": np.full((2, 4), np.nan, np.float32)}, "NaN"),
        ({"x": np.zeros(5, np.float32)}, "sample axis"),
        ({"x": np.array(["a", "b"])}, "numeric"),
        ({"x": np.zeros((3, 4), np.float32), "y": np.zeros(2, np.int64)}, "one label per sample"),
        ({"x": np.zeros((2, 4), np.float32), "y": np.array([0.5, 1.0])}, "integer class labels"),
        ({"x": np.zeros((2, 4), np.float32), "y": np.array([0, -1])}, "negative"),
    ],
)
def test_bad_data_files_are_refused(
    tmp_path: Path, arrays: dict[str, np.ndarray], expected: str
) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    assert expected in refused("calib", load_data, path, "calib").message


def test_a_file_that_is_not_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(b"PK\x03\x04 broken zip")
    refused("eval", load_data, path, "eval")


def test_pickled_object_arrays_are_never_loaded(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    refused("calib", load_data, path, "calib")


def test_labels_are_required_where_needed(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((4, 2), np.float32))
    assert load_data(path, "calib").y is None
    refused("calib", load_data, path, "calib", require_labels=True)


def test_a_sample_is_drawn_across_a_sorted_data_set() -> None:
    from models_hub.compression import Data

    sorted_by_class = Data(
        np.arange(1000, dtype=np.float32)[:, None], np.repeat(np.arange(10), 100)
    )
    sample = sorted_by_class.sample(50)
    assert sample.y is not None and len(set(sample.y.tolist())) == 10, "not the first 50 only"
    assert np.array_equal(sample.x, sorted_by_class.sample(50).x), "seeded"
    assert np.all(np.diff(sample.x[:, 0]) > 0), "kept in order"
    assert sorted_by_class.sample(5000) is sorted_by_class
