"""Management commands: scripted enrollment tokens, role bootstrap, workloads."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from devices.credentials import hash_secret
from devices.models import EnrollmentToken


def test_create_enrollment_token_prints_usable_token(db: Any) -> None:
    out = StringIO()
    call_command("create_enrollment_token", "--uses", "7", "--expires", "2h", stdout=out)
    secret = out.getvalue().strip()
    token = EnrollmentToken.objects.get(token_hash=hash_secret(secret))
    assert token.max_uses == 7 and token.state == "active"
    lifetime = token.expires_at - token.created_at
    assert 7190 < lifetime.total_seconds() <= 7200


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--uses", "0"], "--uses"),
        (["--expires", "forever"], "--expires"),
        (["--expires", "0h"], "--expires"),
    ],
)
def test_create_enrollment_token_bad_input(db: Any, args: list[str], flag: str) -> None:
    with pytest.raises(CommandError, match=flag):
        call_command("create_enrollment_token", *args, stdout=StringIO())
    assert EnrollmentToken.objects.count() == 0


def test_bootstrap_users(db: Any) -> None:
    out = StringIO()
    call_command("bootstrap", "--users", stdout=out)
    admin = User.objects.get(username="admin")
    operator = User.objects.get(username="operator")
    assert admin.is_staff and not operator.is_staff
    assert list(operator.groups.values_list("name", flat=True)) == ["operator"]
    password = out.getvalue().split("operator  password: ")[1].split()[0]
    assert operator.check_password(password)


def test_create_workload_from_a_template_once(db: Any) -> None:
    from scheduling.models import Workload

    args = ["--template", "video-pipeline", "--name", "junction", "--param", "cameras=3"]
    out = StringIO()
    call_command("create_workload", *args, stdout=out)
    workload = Workload.objects.get(pk=out.getvalue().strip())
    assert workload.task_count == 4 * 3 + 2
    again = StringIO()
    call_command("create_workload", *args, "--if-missing", stdout=again)
    assert again.getvalue().strip() == str(workload.pk)
    assert Workload.objects.count() == 1


@pytest.mark.parametrize(
    "param,message",
    [("cameras=many", "--param: 'cameras=many' is not NAME=INTEGER"),
     ("cameras=0", "cameras must be from 1 to 500"),
     ("lanes=2", "lanes is not a parameter of video-pipeline")],
)  # fmt: skip
def test_create_workload_bad_input(db: Any, param: str, message: str) -> None:
    from scheduling.models import Workload

    with pytest.raises(CommandError, match=message):
        call_command(
            "create_workload", "--template", "video-pipeline", "--name", "x", "--param", param
        )
    assert Workload.objects.count() == 0


def test_register_builtin_task_once(db: Any, settings: Any, tmp_path: Any) -> None:
    from models_hub.models import Dataset, ModelArtifact

    settings.MEDIA_ROOT = tmp_path
    out = StringIO()
    call_command("register_builtin_task", "digits", "--epochs", "1", stdout=out)
    artifact = ModelArtifact.objects.get(pk=out.getvalue().strip())
    assert (artifact.name, artifact.framework, artifact.input_shape) == (
        "digits-cnn",
        "torch",
        [1, 16, 16],
    )
    deployable = ModelArtifact.objects.get(name="digits-cnn", version="1-onnx")
    assert (deployable.framework, deployable.input_shape) == ("onnx", [1, 16, 16])
    assert sorted(Dataset.objects.values_list("purpose", "samples")) == [
        ("calibration", 1257),
        ("evaluation", 540),
    ]
    again = StringIO()
    call_command("register_builtin_task", "digits", "--if-missing", stdout=again)
    assert again.getvalue().strip() == str(artifact.pk)
    assert ModelArtifact.objects.count() == 2 and Dataset.objects.count() == 2


def test_register_builtin_task_bad_epochs(db: Any) -> None:
    from models_hub.models import ModelArtifact

    with pytest.raises(CommandError, match="--epochs: from 1 to 200"):
        call_command("register_builtin_task", "digits", "--epochs", "0")
    assert ModelArtifact.objects.count() == 0
