"""Model hub pages with the Django test client: roles, what each page shows, and every
form's good and bad input (a bad one shows the error next to its field and stores
nothing: no row, no file)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from html import escape, unescape
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from frontend import forms as console_forms
from frontend.templatetags import hub_format
from frontend.templatetags.scheduling_format import sig
from models_hub import actions
from models_hub.models import (
    CompressionJob,
    CompressionJobStatus,
    Dataset,
    DatasetPurpose,
    ModelArtifact,
    Variant,
)
from tests.conftest import ROOT
from tests.frontend.hub_helpers import (
    quick_measures,
    register_data,
    register_dataset,
    register_model,
    run_here,
    stored_files,
    uploaded,
)
from tests.frontend.pages import PageRoleTests, logged_in


def field_errors(html: str, name: str) -> list[str]:
    """The errors shown next to form field `name` (frontend/_field.html marks them)."""
    found = re.findall(rf'<p class="field-error" id="id_{name}-error">(.*?)</p>', html, re.S)
    return [unescape(error) for error in found]


def json_data(html: str, element_id: str) -> Any:
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S
    )
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1))


@pytest.fixture(autouse=True)
def media(hub_media: Path) -> Path:
    return hub_media


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    quick_measures(monkeypatch)


@pytest.fixture
def onnx_model(hub_files: dict[str, Path], operator: Any) -> ModelArtifact:
    return register_model(hub_files["model.onnx"], operator, name="digits-onnx")


@pytest.fixture
def torch_model(hub_files: dict[str, Path], operator: Any) -> ModelArtifact:
    return register_model(hub_files["model.pt"], operator, name="digits-torch")


@pytest.fixture
def data(hub_files: dict[str, Path], operator: Any) -> tuple[Dataset, Dataset]:
    return register_data(hub_files, operator)


@pytest.fixture
def job(onnx_model: ModelArtifact, data: tuple[Dataset, Dataset], operator: Any) -> CompressionJob:
    """A queued int8-static job (its task is never sent: the test's transaction never
    commits)."""
    calibration, evaluation = data
    return actions.submit_compression_job(
        model=onnx_model,
        recipe="int8-static",
        calibration=calibration,
        evaluation=evaluation,
        created_by=operator,
    )


@pytest.fixture
def chain_job(
    torch_model: ModelArtifact, data: tuple[Dataset, Dataset], operator: Any
) -> CompressionJob:
    """prune-distill:0.5 then int8-static on the torch model, run here: two variants."""
    calibration, evaluation = data
    job = actions.submit_compression_job(
        model=torch_model,
        recipe="prune-distill:0.5+int8-static",
        parameters={"epochs": 1},
        calibration=calibration,
        evaluation=evaluation,
        created_by=operator,
    )
    run_here(job)
    assert job.status == CompressionJobStatus.SUCCEEDED, (job.error, job.log)
    return job


@pytest.fixture
def urls(job: CompressionJob) -> dict[str, str]:
    # Roles are checked before anything is looked up: the variant need not exist.
    return {
        "registry": "/models/",
        "model": f"/models/{job.model_id}/",
        "datasets": "/models/datasets/",
        "jobs": "/models/jobs/",
        "job": f"/models/jobs/{job.id}/",
        "model-download": f"/models/{job.model_id}/download/",
        "dataset-download": f"/models/datasets/{job.evaluation_id}/download/",
        "variant-download": f"/models/variants/{uuid.uuid4()}/download/",
    }


PAGES = ["registry", "model", "datasets", "jobs", "job"]
DOWNLOADS = ["model-download", "dataset-download", "variant-download"]


# --- roles -------------------------------------------------------------------------------
class TestModelHubPageRoles(PageRoleTests):
    pages = PAGES + DOWNLOADS


@pytest.mark.parametrize("page", PAGES)
def test_operators_see_every_page_with_the_nav(
    operator: Any, urls: dict[str, str], page: str
) -> None:
    response = logged_in(operator).get(urls[page])
    assert response.status_code == 200
    body = response.content.decode()
    for link in ("/models/", "/models/datasets/", "/models/jobs/"):
        assert f'href="{link}"' in body
    assert 'aria-current="page"' in body


def test_role_less_users_cannot_write(
    nobody: Any, job: CompressionJob, hub_files: dict[str, Path], media: Path
) -> None:
    client = logged_in(nobody)
    files_before = stored_files(media)
    posts = [
        ("/models/", {"file": uploaded(hub_files["model.onnx"]), "version": "2"}),
        ("/models/datasets/", {"file": uploaded(hub_files["eval.npz"]), "purpose": "evaluation"}),
        (f"/models/{job.model_id}/", {"recipe": "int8-static"}),
        (f"/models/jobs/{job.id}/cancel/", {}),
        (f"/models/jobs/{job.id}/retry/", {}),
    ]
    for url, form in posts:
        assert client.post(url, form).status_code == 403, url
    assert ModelArtifact.objects.count() == 1 and Dataset.objects.count() == 2
    job.refresh_from_db()
    assert job.status == CompressionJobStatus.QUEUED and CompressionJob.objects.count() == 1
    assert stored_files(media) == files_before


# --- registry ----------------------------------------------------------------------------
def test_register_a_torch_model_and_a_second_version(
    operator: Any, hub_files: dict[str, Path]
) -> None:
    client = logged_in(operator)
    assert "No models yet" in client.get("/models/").content.decode()
    response = client.post(
        "/models/",
        {
            "file": uploaded(hub_files["model.pt"]),
            "name": "digits-cnn",
            "version": "1",
            "input_shape": "[1, 16, 16]",
            "task": "digits",
            "description": "Tiny CNN for handwritten digits",
        },
    )
    model = ModelArtifact.objects.get()
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == f"/models/{model.id}/"
    assert (model.name, model.version, model.framework) == ("digits-cnn", "1", "torch")
    assert model.input_shape == [1, 16, 16] and model.num_classes == 10
    assert model.created_by == operator and model.task == "digits"
    html = client.get(response["Location"]).content.decode()
    assert "digits-cnn 1 registered: PyTorch (saved whole), input [1, 16, 16], 10 outputs." in html
    signature = re.search(r'<section class="card" id="signature">.*?</section>', html, re.S)
    assert signature and "[?, 1, 16, 16]" in signature.group(0) and "[?, 10]" in signature.group(0)
    assert model.sha256 in html and "Conv" in signature.group(0)
    assert f'href="/models/{model.id}/download/"' in html
    assert "No variants yet" in html and "No compression jobs yet." in html

    # Version 2, the same network as ONNX: its shape comes from the file.
    response = client.post(
        "/models/",
        {"file": uploaded(hub_files["model.onnx"]), "name": "digits-cnn", "version": "2"},
    )
    assert response.status_code == 302, response.content.decode()
    second = ModelArtifact.objects.get(version="2")
    assert second.framework == "onnx" and second.input_shape == [1, 16, 16]

    listing = client.get("/models/").content.decode()
    group = re.search(r'<tbody class="model-group" data-model-name="digits-cnn">.*?</tbody>',
                      listing, re.S)  # fmt: skip
    assert group, listing
    assert 'rowspan="2"' in group.group(0) and "2 versions" in group.group(0)
    # Newest first; each row its framework, size, parameters, FLOPs and jobs.
    rows = re.findall(r'<tr data-model-id="([0-9a-f-]+)">', group.group(0))
    assert rows == [str(second.id), str(model.id)]
    assert "ONNX" in group.group(0) and "PyTorch (saved whole)" in group.group(0)
    assert hub_format.count(model.metrics["params"]) in group.group(0)
    assert hub_format.count(model.metrics["flops"]) in group.group(0)
    versions = client.get(f"/models/{model.id}/").content.decode()
    section = re.search(r'<section class="card" id="versions">.*?</section>', versions, re.S)
    assert section and f'href="/models/{second.id}/"' in section.group(0)
    assert "(this one)" in section.group(0)


def test_an_onnx_model_is_named_after_its_file(operator: Any, hub_files: dict[str, Path]) -> None:
    response = logged_in(operator).post(
        "/models/", {"file": uploaded(hub_files["model.onnx"], "lenet.onnx"), "version": "1"}
    )
    assert response.status_code == 302
    assert ModelArtifact.objects.get().name == "lenet"


BAD_MODELS = [
    # file, form fields, the field named, what its error says
    ("junk.onnx", {}, "file", ""),
    ("model.pt", {"input_shape": ""}, "input_shape", "shape of one input sample"),
    ("model.pt", {"input_shape": "3, 8, 8"}, "input_shape", "does not accept samples"),
    ("model.pt", {"input_shape": "one, two"}, "input_shape", "Axis lengths separated by commas"),
    ("model.pt", {"input_shape": "0, 16, 16"}, "input_shape", "whole number above 0"),
    ("untrusted.pt", {}, "file", "Untrusted"),
    ("bogus-op.onnx", {}, "file", "Frobnicate"),
    ("empty.onnx", {}, "file", "The submitted file is empty."),
    (None, {}, "file", "This field is required."),
    ("model.onnx", {"version": ""}, "version", "This field is required."),
    ("model.onnx", {"name": "x" * 101}, "name", "at most 100 characters"),
]


@pytest.mark.parametrize(
    ("file", "fields", "field", "message"),
    BAD_MODELS,
    ids=[
        "not-a-model",
        "torch-without-shape",
        "wrong-shape",
        "shape-not-numbers",
        "zero-axis",
        "untrusted-class",
        "unknown-operator",
        "empty-file",
        "no-file",
        "no-version",
        "long-name",
    ],
)
def test_bad_model_uploads_name_the_field_and_store_nothing(
    operator: Any,
    hub_files: dict[str, Path],
    media: Path,
    file: str | None,
    fields: dict[str, str],
    field: str,
    message: str,
) -> None:
    form: dict[str, Any] = {"name": "bad", "version": "1", "input_shape": "1, 16, 16", **fields}
    if file == "junk.onnx":
        form["file"] = SimpleUploadedFile(file, b"this is not a model\n" * 10)
    elif file == "empty.onnx":
        form["file"] = SimpleUploadedFile(file, b"")
    elif file is not None:
        form["file"] = uploaded(hub_files[file])
    response = logged_in(operator).post("/models/", form)
    assert response.status_code == 400
    html = response.content.decode()
    errors = field_errors(html, field)
    assert errors and message in " ".join(errors), (field, errors, field_errors(html, "file"))
    assert "No model was registered." in html
    assert not ModelArtifact.objects.exists()
    assert stored_files(media) == []


def test_a_taken_version_is_refused_on_the_version_field(
    operator: Any, onnx_model: ModelArtifact, hub_files: dict[str, Path], media: Path
) -> None:
    files_before = stored_files(media)
    response = logged_in(operator).post(
        "/models/",
        {"file": uploaded(hub_files["model.onnx"]), "name": onnx_model.name, "version": "1"},
    )
    assert response.status_code == 400
    assert field_errors(response.content.decode(), "version") == [
        "Version: digits-onnx already has a version '1'."
    ]
    assert ModelArtifact.objects.count() == 1 and stored_files(media) == files_before


def test_model_and_data_files_may_be_larger_than_other_bodies(
    operator: Any, hub_files: dict[str, Path], settings: Any
) -> None:
    """The upload pages take TRIAD_MAX_MODEL_BYTES, as the API's upload routes do."""
    settings.TRIAD_MAX_BODY_BYTES = 4096
    client = logged_in(operator)
    model = uploaded(hub_files["model.onnx"])
    assert (model.size or 0) > 4096
    response = client.post("/models/", {"file": model, "version": "1"})
    assert response.status_code == 302, response.content.decode()
    data = uploaded(hub_files["eval.npz"])
    response = client.post("/models/datasets/", {"file": data, "purpose": "evaluation"})
    assert response.status_code == 302, response.content.decode()
    # Other pages keep the small limit.
    response = client.post("/models/jobs/", {"x": "y" * 5000})
    assert response.status_code == 413


def test_shapes_are_read_as_people_write_them() -> None:
    for text in ("1, 16, 16", "[1,16,16]", "(1 16 16)", "1x16x16", "1\N{MULTIPLICATION SIGN}16"):
        assert console_forms.parse_shape(text)[:2] == [1, 16], text
    for text in ("", "a, b", "1.5, 2", "-1, 2", "[]"):
        with pytest.raises(console_forms.forms.ValidationError):
            console_forms.parse_shape(text)


# --- data sets ---------------------------------------------------------------------------
def test_upload_data_sets(operator: Any, hub_files: dict[str, Path]) -> None:
    client = logged_in(operator)
    assert "No data sets yet" in client.get("/models/datasets/").content.decode()
    response = client.post(
        "/models/datasets/",
        {"file": uploaded(hub_files["calib.npz"]), "name": "", "purpose": "calibration"},
        follow=True,
    )
    dataset = Dataset.objects.get()
    assert (dataset.name, dataset.purpose, dataset.samples) == ("calib", "calibration", 200)
    assert dataset.labelled and dataset.num_classes == 10 and dataset.created_by == operator
    html = response.content.decode()
    assert "Data set “calib” stored: 200 samples of shape [1, 16, 16], labelled." in html
    row = re.search(rf'<tr data-dataset-id="{dataset.id}">.*?</tr>', html, re.S)
    assert row and "[1, 16, 16]" in row.group(0) and "10 classes" in row.group(0)
    assert f'href="/models/datasets/{dataset.id}/download/"' in row.group(0)

    response = client.post(
        "/models/datasets/",
        {"file": uploaded(hub_files["unlabelled.npz"]), "name": "raw", "purpose": "calibration"},
        follow=True,
    )
    assert "50 samples of shape [1, 16, 16], without labels." in response.content.decode()


def npz_bytes(**arrays: Any) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def bad_data(kind: str) -> bytes:
    import numpy as np

    return {
        "not-npz": b"x,y\n1,2\n",
        "no-x": npz_bytes(inputs=np.zeros((4, 2), dtype=np.float32)),
        "no-samples": npz_bytes(x=np.zeros((0, 1, 16, 16), dtype=np.float32)),
        "nan": npz_bytes(x=np.full((4, 1, 16, 16), np.nan, dtype=np.float32)),
        "fractional-labels": npz_bytes(
            x=np.zeros((4, 2), dtype=np.float32), y=np.array([0.5, 1, 2, 3])
        ),
        "labels-short": npz_bytes(
            x=np.zeros((4, 2), dtype=np.float32), y=np.array([0, 1], dtype=np.int64)
        ),
        "empty": b"",
    }[kind]


@pytest.mark.parametrize(
    "kind", ["not-npz", "no-x", "no-samples", "nan", "fractional-labels", "labels-short", "empty"]
)
def test_bad_data_files_name_the_file_field_and_store_nothing(
    operator: Any, media: Path, kind: str
) -> None:
    response = logged_in(operator).post(
        "/models/datasets/",
        {
            "file": SimpleUploadedFile(f"{kind}.npz", bad_data(kind)),
            "name": kind,
            "purpose": "evaluation",
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert field_errors(html, "file"), html
    assert "No data set was stored." in html
    assert not Dataset.objects.exists() and stored_files(media) == []


def test_a_data_set_needs_a_known_purpose(
    operator: Any, hub_files: dict[str, Path], media: Path
) -> None:
    response = logged_in(operator).post(
        "/models/datasets/", {"file": uploaded(hub_files["eval.npz"]), "purpose": "testing"}
    )
    assert response.status_code == 400
    assert "Select a valid choice." in " ".join(field_errors(response.content.decode(), "purpose"))
    assert not Dataset.objects.exists() and stored_files(media) == []


# --- the compression form ----------------------------------------------------------------
def test_the_form_offers_data_sets_of_the_models_shape_by_role(
    operator: Any, torch_model: ModelArtifact, hub_files: dict[str, Path]
) -> None:
    client = logged_in(operator)
    html = client.get(f"/models/{torch_model.id}/").content.decode()
    assert 'id="no-datasets"' in html and "there are none yet" in html

    calibration, evaluation = register_data(hub_files, operator)
    unlabelled = register_dataset(hub_files["unlabelled.npz"], DatasetPurpose.TRAINING, operator)
    import numpy as np

    other = actions.register_dataset(
        upload=SimpleUploadedFile("wide.npz", npz_bytes(x=np.zeros((3, 3, 8, 8), np.float32))),
        name="wide",
        purpose=DatasetPurpose.CALIBRATION,
        created_by=operator,
    )
    html = client.get(f"/models/{torch_model.id}/").content.decode()
    assert 'id="no-datasets"' not in html

    def offered(select: str) -> set[str]:
        found = re.search(rf'<select name="{select}".*?</select>', html, re.S)
        assert found, select
        return set(re.findall(r'<option value="([0-9a-f-]+)"', found.group(0)))

    assert (
        offered("calibration") == offered("training") == {str(calibration.id), str(unlabelled.id)}
    )
    assert offered("evaluation") == {str(evaluation.id)}
    assert str(other.id) not in html and "1 data set of other sample shapes is not offered" in html
    assert "digits-calib (calibration, 200 samples, labelled)" in html
    # Every recipe step is offered, and each parameter field says which steps read it.
    assert '<datalist id="recipe-presets">' in html
    assert 'data-recipe="prune-distill:0.5+int8-static"' in html
    assert re.search(r'name="epochs"[^>]*data-steps="prune prune-distill"', html) or re.search(
        r'data-steps="prune prune-distill"[^>]*name="epochs"', html
    )


def test_onnx_models_are_offered_quantisation(operator: Any, onnx_model: ModelArtifact) -> None:
    html = logged_in(operator).get(f"/models/{onnx_model.id}/").content.decode()
    assert 'id="quantise-only"' in html


def test_submit_a_compression_job(
    operator: Any, onnx_model: ModelArtifact, data: tuple[Dataset, Dataset]
) -> None:
    calibration, evaluation = data
    client = logged_in(operator)
    response = client.post(
        f"/models/{onnx_model.id}/",
        {
            "recipe": " int8-static ",
            "calibration": str(calibration.id),
            "evaluation": str(evaluation.id),
            "training": "",
            "calibration_method": "entropy",
            "per_channel": "false",
            "parameters": '{"calibration_samples": 64}',
            "seed": "7",
        },
    )
    job = CompressionJob.objects.get()
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == f"/models/jobs/{job.id}/"
    assert (job.recipe, job.status, job.seed, job.created_by) == (
        "int8-static",
        CompressionJobStatus.QUEUED,
        7,
        operator,
    )
    assert job.parameters == {
        "calibration_samples": 64,
        "calibration": "entropy",
        "per_channel": False,
    }
    assert (job.calibration, job.evaluation, job.training) == (calibration, evaluation, None)
    html = client.get(response["Location"]).content.decode()
    assert "Compression job queued: int8-static on digits-onnx 1." in html
    assert "pill-job-queued" in html and 'id="cancel-job"' in html and 'id="retry-job"' not in html
    assert "waiting for a compression worker" in html and 'aria-valuenow="0"' in html
    assert 'calibration="entropy"' in html.replace("&quot;", '"')
    assert 'id="result">' in html and "comparison-data" not in html


BAD_JOBS = [
    # model, form fields, the field named, what its error says
    ("onnx", {"recipe": ""}, "recipe", "This field is required."),
    ("onnx", {"recipe": "shrink"}, "recipe", "unknown step 'shrink'"),
    ("torch", {"recipe": "prune:2"}, "recipe", "at most 0.95"),
    ("torch", {"recipe": "int8-static+prune:0.5"}, "recipe", "quantise last"),
    ("onnx", {"recipe": "prune-distill:0.5"}, "recipe", "needs a torch model"),
    ("onnx", {"epochs": "3"}, "epochs", "takes no parameter epochs"),
    ("torch", {"recipe": "prune-distill:0.5", "epochs": "0"}, "epochs", "from 1 to 200"),
    ("torch", {"recipe": "prune-distill:0.5", "importance": "vibes"}, "importance", "valid"),
    ("onnx", {"parameters": '{"calibration_samples": 0}'}, "parameters", "calibration_samples"),
    ("onnx", {"parameters": "{oops"}, "parameters", "Not valid JSON"),
    ("onnx", {"parameters": "[1, 2]"}, "parameters", "A JSON object"),
    (
        "onnx",
        {"calibration_method": "entropy", "parameters": '{"calibration": "minmax"}'},
        "calibration_method",
        "give it once",
    ),
    ("onnx", {"calibration_method": "guess"}, "calibration_method", "Select a valid choice."),
    ("onnx", {"evaluation": "calibration"}, "evaluation", "Select a valid choice."),
    ("torch", {"recipe": "prune:0.5", "calibration": "unlabelled"}, "calibration", "labels"),
    ("onnx", {"seed": "-1"}, "seed", "greater than or equal to 0"),
]


@pytest.mark.parametrize(
    ("model", "fields", "field", "message"),
    BAD_JOBS,
    ids=[
        "no-recipe",
        "unknown-step",
        "ratio-out-of-range",
        "quantise-first",
        "prune-an-onnx-model",
        "parameter-no-step-reads",
        "zero-epochs",
        "unknown-importance",
        "bad-json-parameter",
        "not-json",
        "json-not-an-object",
        "parameter-twice",
        "unknown-calibration-method",
        "calibration-set-for-evaluation",
        "pruning-needs-labels",
        "negative-seed",
    ],
)
def test_bad_compression_input_names_the_field_and_submits_nothing(
    operator: Any,
    hub_files: dict[str, Path],
    data: tuple[Dataset, Dataset],
    model: str,
    fields: dict[str, str],
    field: str,
    message: str,
) -> None:
    artifact = register_model(
        hub_files["model.pt" if model == "torch" else "model.onnx"], operator, name=model
    )
    calibration, evaluation = data
    unlabelled = register_dataset(hub_files["unlabelled.npz"], DatasetPurpose.TRAINING, operator)
    ids = {"calibration": calibration.id, "unlabelled": unlabelled.id}
    form = {
        "recipe": "int8-static",
        "calibration": str(calibration.id),
        "evaluation": str(evaluation.id),
        "seed": "0",
        **{key: str(ids.get(value, value)) for key, value in fields.items()},
    }
    response = logged_in(operator).post(f"/models/{artifact.id}/", form)
    assert response.status_code == 400
    html = response.content.decode()
    errors = field_errors(html, field)
    assert errors and message in " ".join(errors), (field, errors, html[-3000:])
    assert "No job was submitted." in html
    assert not CompressionJob.objects.exists()


def test_steps_and_parameters_match_the_engine() -> None:
    """The form writes out the engine's steps and parameters (importing the engine loads
    torch, which the web process avoids): they must not drift apart."""
    from models_hub.compression import PARAMETERS, STEPS, parse_recipe
    from models_hub.compression.prune import IMPORTANCES
    from models_hub.compression.quantize import CALIBRATION_METHODS

    assert tuple(STEPS) == console_forms.RECIPE_STEPS
    for name, (_, steps) in console_forms.PARAMETER_FIELDS.items():
        assert set(steps) == {kind for kind, names in PARAMETERS.items() if name in names}, name
    for preset in console_forms.RECIPE_PRESETS:
        assert parse_recipe(preset).text == preset
    assert tuple(IMPORTANCES) == console_forms.PRUNE_IMPORTANCES
    assert tuple(CALIBRATION_METHODS) == console_forms.CALIBRATION_METHODS


# --- jobs --------------------------------------------------------------------------------
def test_jobs_list(operator: Any, job: CompressionJob) -> None:
    html = logged_in(operator).get("/models/jobs/").content.decode()
    row = re.search(rf'<tr data-job-id="{job.id}">.*?</tr>', html, re.S)
    assert row, html
    assert "pill-job-queued" in row.group(0) and "int8-static" in row.group(0)
    assert f'href="/models/{job.model_id}/"' in row.group(0) and "digits-onnx" in row.group(0)
    assert 'data-live-path="/ws/models/jobs/"' in html


def test_cancel_and_retry(operator: Any, job: CompressionJob) -> None:
    client = logged_in(operator)
    response = client.post(f"/models/jobs/{job.id}/cancel/", follow=True)
    job.refresh_from_db()
    assert job.status == CompressionJobStatus.CANCELLED
    html = response.content.decode()
    assert "The job is cancelled." in html and 'id="retry-job"' in html
    assert 'id="cancel-job"' not in html
    # Nothing left to cancel: refused with a message, nothing changes.
    response = client.post(f"/models/jobs/{job.id}/cancel/", follow=True)
    assert "there is nothing to cancel" in response.content.decode()

    response = client.post(f"/models/jobs/{job.id}/retry/", follow=True)
    job.refresh_from_db()
    assert job.status == CompressionJobStatus.QUEUED
    assert "queued again" in response.content.decode()
    response = client.post(f"/models/jobs/{job.id}/retry/", follow=True)
    assert "Only failed, cancelled or stalled jobs can be retried" in response.content.decode()
    assert client.get(f"/models/jobs/{job.id}/cancel/").status_code == 405


def test_a_running_job_asks_the_worker_to_stop(operator: Any, job: CompressionJob) -> None:
    attempt = actions.start_attempt(job.id)
    assert attempt == 1
    actions.record_progress(job.id, attempt, 0.4, "int8-static: calibrating", ["calibrating"])
    client = logged_in(operator)
    html = client.get(f"/models/jobs/{job.id}/").content.decode()
    assert 'aria-valuenow="40"' in html and "int8-static: calibrating" in html
    assert "progress-running" in html
    response = client.post(f"/models/jobs/{job.id}/cancel/", follow=True)
    html = unescape(response.content.decode())
    assert "The job stops at the engine's next check." in html
    assert "stopping at the engine" in html and 'id="cancel-job"' not in html


def test_a_failed_job_shows_its_error_and_keeps_its_log(operator: Any, job: CompressionJob) -> None:
    attempt = actions.start_attempt(job.id)
    assert attempt is not None
    actions.record_progress(job.id, attempt, 0.3, "calibrating", ["read 200 samples"])
    actions.record_failure(job.id, attempt, "calib: the <data> broke")
    html = logged_in(operator).get(f"/models/jobs/{job.id}/").content.decode()
    error = re.search(r'<div class="alert alert-error" role="alert" id="job-error">.*?</div>',
                      html, re.S)  # fmt: skip
    assert error and "calib: the &lt;data&gt; broke" in error.group(0)
    log = re.search(r'<pre class="log" id="job-log"[^>]*>(.*?)</pre>', html, re.S)
    assert log
    lines = unescape(log.group(1)).splitlines()
    assert any(line.endswith("attempt 1 started") for line in lines)
    assert any(line.endswith("read 200 samples") for line in lines)
    assert lines[-1].endswith("failed: calib: the <data> broke")
    assert 'id="retry-job"' in html and "pill-job-failed" in html and "progress-failed" in html


def test_a_succeeded_job_compares_its_variants(
    operator: Any, chain_job: CompressionJob, media: Path
) -> None:
    client = logged_in(operator)
    html = client.get(f"/models/jobs/{chain_job.id}/").content.decode()
    report = chain_job.report
    assert report is not None
    entries = report["variants"]
    names = ["original", "prune-distill:0.5", "prune-distill:0.5+int8-static"]
    assert [entry["name"] for entry in entries] == names
    assert "pill-job-succeeded" in html and 'aria-valuenow="100"' in html
    assert 'id="result" data-ready' in html

    table = re.search(r'<table class="compact variants" id="comparison-table">.*?</table>',
                      html, re.S)  # fmt: skip
    assert table
    rows = re.findall(r'<tbody data-variant="([^"]+)"( class="pareto")?>', table.group(0))
    assert [name for name, _ in rows] == names
    assert [bool(pareto) for _, pareto in rows] == [e["pareto_optimal"] for e in entries]
    assert any(pareto for _, pareto in rows)
    for header in ("Accuracy", "Δ", "Agrees", "Size", "Params", "FLOPs", "p50", "p95",
                   "1 thread (ms)", "All threads (ms)", "Speed-up"):  # fmt: skip
        assert header in table.group(0), header
    quantised = entries[2]
    assert hub_format.percent(quantised["accuracy"]) in table.group(0)
    assert hub_format.points(quantised["accuracy_delta"]) in table.group(0)
    assert hub_format.filesize(quantised["size_bytes"]) in table.group(0)
    p95 = quantised["latency_ms"]["all_threads"]["p95"]
    assert sig(p95) in table.group(0)
    for entry in entries:
        for note in entry["notes"]:
            assert f"Note: {escape(note)}" in table.group(0)

    # Downloads: the original and each variant, with their own names and bytes.
    variants = list(Variant.objects.filter(job=chain_job).order_by("index"))
    links = re.findall(r'<a href="([^"]+)" download data-download="([^"]+)">', table.group(0))
    assert links == [
        (f"/models/{chain_job.model_id}/download/", "original"),
        *((f"/models/variants/{v.id}/download/", v.name) for v in variants),
    ]
    for url, variant in zip([link for link, _ in links[1:]], variants, strict=True):
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Disposition"].endswith(
            f'filename="{Path(variant.file.name).name}"'
        )
        assert response.getvalue() == (media / variant.file.name).read_bytes()
    original = client.get(links[0][0])
    assert original.getvalue() == (media / chain_job.model.file.name).read_bytes()

    # The charts' data: every row, the Pareto marks as the engine made them.
    data = json_data(html, "comparison-data")
    assert data["quality"] == "accuracy"
    assert [row["name"] for row in data["rows"]] == names
    assert [row["pareto"] for row in data["rows"]] == [e["pareto_optimal"] for e in entries]
    assert data["rows"][0]["original"] and not data["rows"][1]["original"]
    assert data["rows"][2]["quality"] == pytest.approx(100 * quantised["accuracy"])
    assert data["rows"][2]["p50"] == quantised["latency_ms"]["1_thread"]["p50"]

    # Estimates per device profile.
    devices = re.search(r'<table class="compact" id="device-table">.*?</table>', html, re.S)
    assert devices
    for profile in chain_job.device_profiles:
        assert profile["name"] in devices.group(0)
        estimate = quantised["devices"][profile["name"]]
        assert hub_format.millijoules(estimate["energy_mj"]) in devices.group(0)

    # The model page now shows the job, its variants, and the measured original.
    page = client.get(f"/models/{chain_job.model_id}/").content.decode()
    assert hub_format.percent(entries[0]["accuracy"]) in page
    section = re.search(r'<section class="card" id="model-variants">.*?</section>', page, re.S)
    assert section and all(f'data-variant-id="{v.id}"' in section.group(0) for v in variants)
    assert f'data-job-id="{chain_job.id}"' in page


def test_without_labels_variants_are_compared_by_agreement(
    operator: Any,
    onnx_model: ModelArtifact,
    data: tuple[Dataset, Dataset],
    hub_files: dict[str, Path],
) -> None:
    unlabelled = register_dataset(
        hub_files["unlabelled.npz"], DatasetPurpose.EVALUATION, operator, name="raw"
    )
    job = actions.submit_compression_job(
        model=onnx_model,
        recipe="int8-static",
        calibration=data[0],
        evaluation=unlabelled,
        created_by=operator,
    )
    run_here(job)
    assert job.status == CompressionJobStatus.SUCCEEDED, job.error
    html = logged_in(operator).get(f"/models/jobs/{job.id}/").content.decode()
    assert "The evaluation set has no labels: variants are compared by agreement." in html
    comparison = json_data(html, "comparison-data")
    assert comparison["quality"] == "agreement"
    assert comparison["quality_label"] == "Agreement (%)"
    assert comparison["rows"][0]["quality"] == 100.0
    assert "on agreement against latency" in html


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_size_chart_writes_sizes_as_the_table_does() -> None:
    source = (ROOT / "frontend/static/frontend/models/job.js").read_text()
    function = re.search(r"^  function filesize\(bytes\) \{$.*?^  \}$", source, re.S | re.M)
    assert function
    sizes = [0, 512, 1023, 1024, 35_955, 1_048_575, 4_404_019, 123_456_789, 3 << 30, 5 << 40]
    script = f"{function.group()}\nconsole.log(JSON.stringify({json.dumps(sizes)}.map(filesize)));"
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [hub_format.filesize(size) for size in sizes]


def test_a_download_whose_file_is_gone_is_404(
    operator: Any, onnx_model: ModelArtifact, media: Path
) -> None:
    (media / onnx_model.file.name).unlink()
    assert logged_in(operator).get(f"/models/{onnx_model.id}/download/").status_code == 404


def test_unknown_objects_are_404(operator: Any, db: Any) -> None:
    client = logged_in(operator)
    for url in (
        f"/models/{uuid.uuid4()}/",
        f"/models/jobs/{uuid.uuid4()}/",
        f"/models/{uuid.uuid4()}/download/",
        f"/models/variants/{uuid.uuid4()}/download/",
        f"/models/datasets/{uuid.uuid4()}/download/",
    ):
        assert client.get(url).status_code == 404, url


# --- formats -----------------------------------------------------------------------------
def test_formats() -> None:
    assert [hub_format.filesize(v) for v in (512, 35_955, 4_404_019, 3 << 30, None)] == [
        "512 B",
        "35.1 KiB",
        "4.2 MiB",
        "3 GiB",
        "—",
    ]
    assert [hub_format.count(v) for v in (950, 12_345, 4_560_000, 1.2e9, 999_999)] == [
        "950",
        "12.3 k",
        "4.56 M",
        "1.2 G",
        "1 M",
    ]
    assert hub_format.points(0.5) == "+0.50 pt" and hub_format.points(-1.254) == "\u22121.25 pt"
    assert hub_format.points(0.001) == "±0.00 pt" and hub_format.points(None) == "—"
    assert hub_format.percent(0.9725) == "97.25 %" and hub_format.percent(True) == "—"
    assert hub_format.progress_pct(0.456) == "46 %" and hub_format.progress_pct(3) == "100 %"
    assert hub_format.shape([None, 1, 16]) == "[?, 1, 16]"
