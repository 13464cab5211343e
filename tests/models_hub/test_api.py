"""Model hub API: model and data set uploads, jobs, variants, downloads.

Every bad upload or job gets a 400 whose body names the field, and stores nothing: no
row, and no file under MEDIA_ROOT.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from models_hub import actions
from models_hub.models import (
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    DatasetPurpose,
    ModelArtifact,
    Variant,
)
from tests.api.mixins import CreateMixin, ListMixin, RoleMixin, client_for
from tests.models_hub.conftest import register_dataset, register_model, stored_files
from tests.models_hub.helpers import SAMPLE_SHAPE

API = "/api/v1/models"
MODELS_URL = f"{API}/artifacts/"
DATASETS_URL = f"{API}/datasets/"
JOBS_URL = f"{API}/jobs/"


def post_file(user: Any, url: str, content: bytes, filename: str, **fields: Any) -> Any:
    file = SimpleUploadedFile(filename, content, content_type="application/octet-stream")
    return client_for(user).post(url, {"file": file, **fields}, format="multipart")


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def digits_like(samples: int = 20, classes: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((samples, *SAMPLE_SHAPE)).astype(np.float32),
        "y": np.arange(samples) % classes,
    }


def downloaded(response: Any) -> bytes:
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def nothing_stored(media: Path) -> None:
    assert not ModelArtifact.objects.exists()
    assert not Dataset.objects.exists()
    assert stored_files(media) == []


# --- models -----------------------------------------------------------------------------
class TestModelArtifactAPI(RoleMixin, ListMixin):
    url = MODELS_URL
    fixture_name = "onnx_model"

    def test_upload_onnx_reads_its_signature(
        self, operator: Any, files: dict[str, Path], media: Path
    ) -> None:
        content = files["model.onnx"].read_bytes()
        response = post_file(operator, self.url, content, "digits.onnx", name="digits", task="d")
        assert response.status_code == 201, response.json()
        body = response.json()
        assert (body["name"], body["version"], body["framework"]) == ("digits", "1", "onnx")
        assert body["input_shape"] == list(SAMPLE_SHAPE)  # from the model's own input
        assert body["input_signature"][0]["shape"] == [None, *SAMPLE_SHAPE]
        assert body["output_signature"][0]["shape"] == [None, 10]
        assert body["num_classes"] == 10
        assert body["sha256"] == hashlib.sha256(content).hexdigest()
        assert body["size_bytes"] == len(content)
        assert body["filename"] == "digits.onnx"
        assert {"Conv", "Gemm"} <= set(body["metrics"]["operators"])
        assert body["metrics"]["params"] > 0 and body["metrics"]["flops"] > 0
        artifact = ModelArtifact.objects.get(pk=body["id"])
        assert artifact.created_by == operator
        assert stored_files(media) == [f"models/{artifact.id}/digits.onnx"]
        assert (media / artifact.file.name).read_bytes() == content

    def test_upload_torch_model_saved_whole(
        self, operator: Any, files: dict[str, Path], media: Path
    ) -> None:
        response = post_file(
            operator,
            self.url,
            files["model.pt"].read_bytes(),
            "cnn.pt",
            input_shape="1,16,16",
        )
        assert response.status_code == 201, response.json()
        body = response.json()
        assert (body["name"], body["framework"], body["num_classes"]) == ("cnn", "torch", 10)
        assert body["input_shape"] == [1, 16, 16]

    @pytest.mark.parametrize("shape", [["1", "16", "16"], "[1, 16, 16]", "1, 16, 16"])
    def test_input_shape_spellings(self, operator: Any, files: dict[str, Path], shape: Any) -> None:
        response = post_file(
            operator, self.url, files["model.pt"].read_bytes(), "m.pt", input_shape=shape
        )
        assert response.status_code == 201, response.json()
        assert response.json()["input_shape"] == [1, 16, 16]

    @pytest.mark.parametrize(
        ("make", "fields", "field", "words"),
        [
            (lambda f: b"this is not a model", {}, "file", "not an ONNX model"),
            (lambda f: b"", {}, "file", "empty"),
            (
                lambda f: f["model.onnx"].read_bytes()[: len(f["model.onnx"].read_bytes()) // 2],
                {},
                "file",
                "ONNX",
            ),
            (
                lambda f: f["untrusted.pt"].read_bytes(),
                {"input_shape": "1,16,16"},
                "file",
                "Untrusted",
            ),
            (lambda f: f["bogus-op.onnx"].read_bytes(), {}, "file", "Frobnicate"),
            (lambda f: f["model.onnx"].read_bytes(), {"input_shape": "1,8,8"}, "input_shape", "8"),
            (lambda f: f["model.pt"].read_bytes(), {"input_shape": "3,16,16"}, "input_shape", ""),
            (lambda f: f["model.pt"].read_bytes(), {}, "input_shape", "torch model"),
            (lambda f: f["model.onnx"].read_bytes(), {"input_shape": "0,16"}, "input_shape", ""),
            (lambda f: f["model.onnx"].read_bytes(), {"input_shape": "a,b"}, "input_shape", ""),
            (lambda f: f["model.onnx"].read_bytes(), {"version": "v" * 41}, "version", ""),
            (lambda f: f["model.onnx"].read_bytes(), {"name": "n" * 101}, "name", ""),
        ],
        ids=[
            "not-a-model",
            "empty",
            "truncated-onnx",
            "untrusted-pickle",
            "unsupported-operator",
            "onnx-wrong-shape",
            "torch-wrong-shape",
            "torch-without-shape",
            "zero-axis",
            "shape-not-numbers",
            "long-version",
            "long-name",
        ],
    )
    def test_bad_upload_names_its_field_and_stores_nothing(
        self,
        operator: Any,
        files: dict[str, Path],
        media: Path,
        make: Callable[[dict[str, Path]], bytes],
        fields: dict[str, Any],
        field: str,
        words: str,
    ) -> None:
        response = post_file(operator, self.url, make(files), "upload.onnx", **fields)
        assert response.status_code == 400, response.json()
        body = response.json()
        assert field in body, body
        assert words in str(body[field]), body
        nothing_stored(media)

    def test_missing_file_is_named(self, operator: Any) -> None:
        response = client_for(operator).post(self.url, {"name": "x"}, format="multipart")
        assert response.status_code == 400
        assert "file" in response.json()

    def test_taken_version_is_named_and_the_registry_unchanged(
        self, operator: Any, onnx_model: ModelArtifact, files: dict[str, Path], media: Path
    ) -> None:
        before = stored_files(media)
        content = files["model.onnx"].read_bytes()
        response = post_file(operator, self.url, content, "m.onnx", name=onnx_model.name)
        assert response.status_code == 400
        assert "already has a version '1'" in response.json()["version"][0]
        assert ModelArtifact.objects.count() == 1
        assert stored_files(media) == before

    def test_versions_listed_together(
        self, operator: Any, onnx_model: ModelArtifact, files: dict[str, Path]
    ) -> None:
        second = register_model(files["model.onnx"], operator, name=onnx_model.name, version="2")
        register_model(files["model.onnx"], operator, name="other")
        client = client_for(operator)
        listed = client.get(self.url, {"name": onnx_model.name}).json()
        assert {row["version"] for row in listed["results"]} == {"1", "2"}
        versions = client.get(f"{self.url}{onnx_model.id}/versions/").json()
        assert [row["id"] for row in versions] == [str(second.id), str(onnx_model.id)]
        assert client.get(self.url, {"search": "DIGITS"}).json()["count"] == 2
        assert client.get(self.url, {"framework": "torch"}).json()["count"] == 0
        assert client.get(self.url, {"framework": "caffe"}).status_code == 400

    def test_download_is_the_registered_file(
        self, operator: Any, onnx_model: ModelArtifact, files: dict[str, Path]
    ) -> None:
        detail = client_for(operator).get(f"{self.url}{onnx_model.id}/").json()
        assert detail["download_url"].endswith(f"{self.url}{onnx_model.id}/download/")
        for accept in ("*/*", "application/octet-stream"):
            response = client_for(operator).get(detail["download_url"], HTTP_ACCEPT=accept)
            assert response.status_code == 200
            assert downloaded(response) == files["model.onnx"].read_bytes()
            assert 'filename="model.onnx"' in response["Content-Disposition"]

    def test_delete_unused_model_and_its_file(
        self,
        operator: Any,
        onnx_model: ModelArtifact,
        media: Path,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(operator).delete(f"{self.url}{onnx_model.id}/")
        assert response.status_code == 204
        assert not ModelArtifact.objects.exists()
        assert not any(name.startswith("models/") for name in stored_files(media))

    def test_delete_refused_while_a_job_used_it(
        self, operator: Any, job: CompressionJob, media: Path
    ) -> None:
        response = client_for(operator).delete(f"{self.url}{job.model_id}/")
        assert response.status_code == 409
        assert response.json()["code"] == "conflict"
        assert (media / job.model.file.name).exists()

    def test_a_model_larger_than_other_bodies_may_be_uploaded(
        self, operator: Any, files: dict[str, Path], settings: Any
    ) -> None:
        settings.TRIAD_MAX_BODY_BYTES = 4096
        content = files["model.onnx"].read_bytes()
        assert len(content) > 4096
        response = post_file(operator, self.url, content, "m.onnx")
        assert response.status_code == 201, response.json()

    def test_a_body_over_the_model_limit_is_refused_unread(
        self, operator: Any, files: dict[str, Path], settings: Any, media: Path
    ) -> None:
        settings.TRIAD_MAX_MODEL_BYTES = 64 * 1024
        response = post_file(operator, self.url, b"\0" * (64 * 1024), "m.onnx")
        assert response.status_code == 413
        assert response.json()["code"] == "request_too_large"
        nothing_stored(media)

    def test_too_big_file_named(self, operator: Any, settings: Any, media: Path) -> None:
        settings.TRIAD_MAX_MODEL_BYTES = 64 * 1024
        response = post_file(operator, self.url, b"\0" * (actions.max_file_bytes() + 1), "m.onnx")
        assert response.status_code == 400
        assert "larger than" in response.json()["file"][0]
        nothing_stored(media)


# --- data sets --------------------------------------------------------------------------
class TestDatasetAPI(RoleMixin, ListMixin):
    url = DATASETS_URL
    fixture_name = "calibration_set"

    def test_upload_labelled(self, operator: Any, media: Path) -> None:
        content = npz(**digits_like(30))
        response = post_file(
            operator, self.url, content, "calib.npz", purpose=DatasetPurpose.CALIBRATION
        )
        assert response.status_code == 201, response.json()
        body = response.json()
        assert (body["name"], body["purpose"], body["samples"]) == ("calib", "calibration", 30)
        assert (body["sample_shape"], body["labelled"], body["num_classes"]) == (
            list(SAMPLE_SHAPE),
            True,
            10,
        )
        assert body["sha256"] == hashlib.sha256(content).hexdigest()
        assert stored_files(media) == [f"datasets/{body['id']}/calib.npz"]

    def test_upload_unlabelled(self, operator: Any, files: dict[str, Path]) -> None:
        content = files["unlabelled.npz"].read_bytes()
        response = post_file(operator, self.url, content, "u.npz", purpose="calibration")
        assert response.status_code == 201, response.json()
        assert (response.json()["labelled"], response.json()["num_classes"]) == (False, None)

    @pytest.mark.parametrize(
        ("content", "fields", "field", "words"),
        [
            (b"not an archive", {}, "file", "not a readable .npz"),
            (npz(x=np.zeros((0, *SAMPLE_SHAPE), np.float32)), {}, "file", "empty"),
            (npz(a=np.zeros((4, 2))), {}, "file", "no array named 'x'"),
            (npz(x=np.full((4, 2), np.nan, np.float32)), {}, "file", "NaN"),
            (npz(x=np.zeros((4, 2)), y=np.array([0, 1, 2])), {}, "file", "one label per sample"),
            (npz(x=np.zeros((4, 2)), y=np.array([0.5, 1, 2, 3])), {}, "file", "integer"),
            (npz(x=np.zeros((4, 2)), y=np.array([0, -1, 2, 3])), {}, "file", "negative"),
            (npz(x=np.array(["a", "b"])), {}, "file", "numeric"),
            (npz(x=np.zeros((4, 2))), {"purpose": "testing"}, "purpose", ""),
            (npz(x=np.zeros((4, 2))), {"purpose": None}, "purpose", ""),
        ],
        ids=[
            "not-npz",
            "empty",
            "no-x",
            "nan",
            "label-count",
            "fractional-labels",
            "negative-labels",
            "strings",
            "unknown-purpose",
            "no-purpose",
        ],
    )
    def test_bad_upload_names_its_field_and_stores_nothing(
        self,
        operator: Any,
        media: Path,
        content: bytes,
        fields: dict[str, Any],
        field: str,
        words: str,
    ) -> None:
        data = {"purpose": "evaluation", **fields}
        data = {k: v for k, v in data.items() if v is not None}
        response = post_file(operator, self.url, content, "data.npz", **data)
        assert response.status_code == 400, response.json()
        assert field in response.json()
        assert words in str(response.json()[field])
        nothing_stored(media)

    def test_pickled_arrays_are_refused_unloaded(self, operator: Any, media: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, x=np.array([{"a": 1}, None], dtype=object))
        response = post_file(operator, self.url, buffer.getvalue(), "p.npz", purpose="evaluation")
        assert response.status_code == 400
        assert "file" in response.json()
        nothing_stored(media)

    def test_filters(
        self, operator: Any, calibration_set: Dataset, evaluation_set: Dataset
    ) -> None:
        client = client_for(operator)
        listed = client.get(self.url, {"purpose": "evaluation"}).json()["results"]
        assert [row["id"] for row in listed] == [str(evaluation_set.id)]
        assert client.get(self.url, {"search": "calib"}).json()["count"] == 1

    def test_download(
        self, operator: Any, calibration_set: Dataset, files: dict[str, Path]
    ) -> None:
        response = client_for(operator).get(f"{self.url}{calibration_set.id}/download/")
        assert response.status_code == 200
        assert downloaded(response) == files["calib.npz"].read_bytes()

    def test_delete_refused_while_a_job_used_it(self, operator: Any, job: CompressionJob) -> None:
        response = client_for(operator).delete(f"{self.url}{job.evaluation_id}/")
        assert response.status_code == 409
        assert Dataset.objects.filter(pk=job.evaluation_id).exists()

    def test_delete_unused(
        self,
        operator: Any,
        calibration_set: Dataset,
        media: Path,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(operator).delete(f"{self.url}{calibration_set.id}/")
        assert response.status_code == 204
        assert stored_files(media) == []


# --- jobs -------------------------------------------------------------------------------
@pytest.fixture
def wide_labels_set(operator: Any, tmp_path: Path) -> Dataset:
    """Labelled with 12 classes: more than the models' 10 outputs."""
    path = tmp_path / "wide.npz"
    path.write_bytes(npz(**digits_like(24, classes=12)))
    return register_dataset(path, DatasetPurpose.EVALUATION, operator)


@pytest.fixture
def small_images_set(operator: Any, tmp_path: Path) -> Dataset:
    path = tmp_path / "small.npz"
    path.write_bytes(npz(x=np.zeros((4, 1, 8, 8), np.float32)))
    return register_dataset(path, DatasetPurpose.CALIBRATION, operator)


@pytest.fixture
def unlabelled_set(operator: Any, files: dict[str, Path]) -> Dataset:
    return register_dataset(files["unlabelled.npz"], DatasetPurpose.TRAINING, operator)


class TestCompressionJobAPI(RoleMixin, ListMixin, CreateMixin):
    url = JOBS_URL
    fixture_name = "job"
    model = CompressionJob
    # "@fixture" stands for that fixture's id (see create_body).
    valid_create = {
        "model": "@torch_model",
        "recipe": "prune-distill:0.5 + int8-static",
        "parameters": {"epochs": 1, "temperature": 3.0},
    }
    invalid_create = [
        ({"model": "00000000-0000-0000-0000-000000000000"}, "model"),
        ({"recipe": ""}, "recipe"),
        ({"recipe": "shrink"}, "recipe"),
        ({"recipe": "prune:1.5"}, "recipe"),
        ({"recipe": "prune:0"}, "recipe"),
        ({"recipe": "prune-distill"}, "recipe"),
        ({"recipe": "int8-static+prune:0.5"}, "recipe"),
        ({"recipe": "prune:0.5", "model": "@onnx_model"}, "recipe"),
        ({"recipe": "int8-static", "parameters": {"frobnicate": 1}}, "parameters"),
        ({"recipe": "int8-static", "parameters": {"calibration": "guess"}}, "parameters"),
        (
            {"recipe": "prune:0.5", "parameters": {"epochs": 0}, "model": "@torch_model"},
            "parameters",
        ),
        (
            {"recipe": "prune-distill:0.5", "parameters": {"alpha": 2}, "model": "@torch_model"},
            "parameters",
        ),
        ({"parameters": [1, 2]}, "parameters"),
        ({"evaluation": "@wide_labels_set"}, "evaluation"),
        ({"evaluation": "@calibration_set"}, "evaluation"),
        ({"calibration": "@evaluation_set"}, "calibration"),
        ({"calibration": "@small_images_set"}, "calibration"),
        (
            {"recipe": "prune:0.5", "model": "@torch_model", "training": "@unlabelled_set"},
            "training",
        ),
        ({"seed": -1}, "seed"),
        ({"training": "not-a-uuid"}, "training"),
    ]

    def create_body(self, body: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
        defaults = {
            "model": "@onnx_model",
            "recipe": "int8-static",
            "calibration": "@calibration_set",
            "evaluation": "@evaluation_set",
        }
        resolved = {}
        for key, value in {**defaults, **body}.items():
            if isinstance(value, str) and value.startswith("@"):
                value = str(request.getfixturevalue(value[1:]).id)
            resolved[key] = value
        return resolved

    def test_create_freezes_device_profiles(
        self, operator: Any, request: pytest.FixtureRequest
    ) -> None:
        body = self.create_body(self.valid_create, request)
        response = client_for(operator).post(self.url, body, format="json")
        assert response.status_code == 201, response.json()
        created = response.json()
        assert created["status"] == CompressionJobStatus.QUEUED
        assert created["recipe"] == "prune-distill:0.5+int8-static"  # normalised
        assert created["parameters"] == {"epochs": 1, "temperature": 3.0}
        # No device online: the engine's default profile per tier.
        assert [p["name"].split()[0] for p in created["device_profiles"]] == [
            "end",
            "edge",
            "cloud",
        ]
        assert created["log"] == "" and created["report"] is None

    def test_parameter_errors_nest_under_parameters(
        self, operator: Any, request: pytest.FixtureRequest
    ) -> None:
        body = self.create_body(
            {"recipe": "prune:0.5", "parameters": {"epochs": 0}, "model": "@torch_model"}, request
        )
        response = client_for(operator).post(self.url, body, format="json")
        assert response.status_code == 400
        assert list(response.json()["parameters"]) == ["epochs"]

    def test_labels_out_of_range_are_named(
        self, operator: Any, request: pytest.FixtureRequest
    ) -> None:
        body = self.create_body({"evaluation": "@wide_labels_set"}, request)
        message = client_for(operator).post(self.url, body, format="json").json()["evaluation"][0]
        assert "holds class 11" in message and "10 outputs" in message

    def test_list_leaves_out_logs_and_filters(self, operator: Any, job: CompressionJob) -> None:
        client = client_for(operator)
        listed = client.get(self.url).json()["results"]
        assert [row["id"] for row in listed] == [str(job.id)]
        assert "log" not in listed[0] and "report" not in listed[0]
        assert client.get(self.url, {"status": "queued"}).json()["count"] == 1
        assert client.get(self.url, {"status": "failed"}).json()["count"] == 0
        assert client.get(self.url, {"model": str(job.model_id)}).json()["count"] == 1

    def test_cancel_and_retry(self, operator: Any, job: CompressionJob) -> None:
        client = client_for(operator)
        cancelled = client.post(f"{self.url}{job.id}/cancel/")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == CompressionJobStatus.CANCELLED
        again = client.post(f"{self.url}{job.id}/cancel/")
        assert again.status_code == 409 and again.json()["code"] == "conflict"
        retried = client.post(f"{self.url}{job.id}/retry/")
        assert retried.status_code == 200
        assert retried.json()["status"] == CompressionJobStatus.QUEUED
        assert "retry queued" in retried.json()["log"]
        assert client.post(f"{self.url}{job.id}/retry/").status_code == 409


class TestVariantAPI(RoleMixin):
    url = f"{API}/variants/"

    def test_job_variants_and_downloads(
        self, operator: Any, succeeded_job: CompressionJob, media: Path
    ) -> None:
        client = client_for(operator)
        detail = client.get(f"{JOBS_URL}{succeeded_job.id}/").json()
        assert detail["status"] == "succeeded" and detail["progress"] == 1.0
        assert detail["report"]["variants"][0]["name"] == "original"
        variants = client.get(f"{JOBS_URL}{succeeded_job.id}/variants/").json()
        assert [v["name"] for v in variants] == ["int8-static"]
        variant = variants[0]
        assert variant["parent"] is None and variant["model"] == str(succeeded_job.model_id)
        assert set(variant["metrics"]) >= {"accuracy", "latency_ms", "speedup", "pareto_optimal"}
        assert set(variant["metrics_per_device"]) == {
            p["name"] for p in succeeded_job.device_profiles
        }
        content = downloaded(client.get(variant["download_url"]))
        assert hashlib.sha256(content).hexdigest() == variant["sha256"]
        assert len(content) == variant["size_bytes"]
        listed = client.get(self.url, {"job": str(succeeded_job.id)}).json()
        assert listed["count"] == 1
        assert client.get(f"{self.url}{variant['id']}/").json()["name"] == "int8-static"

    def test_unknown_variant(self, operator: Any) -> None:
        response = client_for(operator).get(f"{self.url}00000000-0000-0000-0000-000000000000/")
        assert response.status_code == 404
        assert not Variant.objects.exists()


def test_schema_documents_the_model_hub(operator_client: Any) -> None:
    schema = operator_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = schema.json()["paths"]
    for route in (
        "artifacts/",
        "artifacts/{id}/",
        "artifacts/{id}/download/",
        "artifacts/{id}/versions/",
        "datasets/",
        "datasets/{id}/",
        "datasets/{id}/download/",
        "jobs/",
        "jobs/{id}/",
        "jobs/{id}/cancel/",
        "jobs/{id}/retry/",
        "jobs/{id}/variants/",
        "variants/",
        "variants/{id}/",
        "variants/{id}/download/",
    ):
        assert f"{API}/{route}" in paths, route
    upload = paths[f"{API}/artifacts/"]["post"]["requestBody"]["content"]
    assert list(upload) == ["multipart/form-data"]
