"""`python manage.py register_builtin_task digits [--epochs 8] [--if-missing]`.

Trains the built-in task's teacher (`models_hub.compression.tasks`: seconds on the CPU)
and registers it with its calibration and evaluation sets, so that a fresh install has a
model to compress; and its ONNX export as version `1-onnx`, a model agents can run as it
is. `--if-missing` does nothing when the model is registered already, so the demo runs it
at every start.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_hub import actions
from models_hub.models import DatasetPurpose, ModelArtifact

VERSION = "1"
ONNX_VERSION = "1-onnx"


class Command(BaseCommand):
    help = "Train a built-in task's teacher and register it with its data sets; prints its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", choices=("digits", "textures"))
        parser.add_argument("--epochs", type=int, default=8)
        parser.add_argument("--if-missing", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        from models_hub.compression.builtin import write_task

        name = f"{options['task']}-cnn"
        existing = ModelArtifact.objects.filter(name=name, version=VERSION).first()
        if existing is not None and options["if_missing"]:
            self.stdout.write(str(existing.pk))
            return
        if not 1 <= options["epochs"] <= 200:
            raise CommandError("--epochs: from 1 to 200")
        with tempfile.TemporaryDirectory() as folder:
            info = write_task(options["task"], Path(folder), "small-cnn", options["epochs"], 0)
            try:
                artifact = self._register(Path(folder), name, info)
            except actions.ModelHubError as error:
                raise CommandError(f"{error.field or 'task'}: {error.message}") from error
        self.stdout.write(str(artifact.pk))

    def _register(self, folder: Path, name: str, info: dict[str, Any]) -> ModelArtifact:
        description = (
            f"Built-in {info['task']} teacher: {info['description']}. Small CNN, "
            f"{info['epochs']} epochs, {100 * info['test_accuracy']:.1f}% on the test split."
        )
        artifact = actions.register_model(
            upload=_named(folder / "model.pt"),
            name=name,
            version=VERSION,
            created_by=None,
            input_shape=info["sample_shape"],
            description=description,
            task=info["task"],
        )
        actions.register_model(
            upload=_named(folder / "model.onnx"),
            name=name,
            version=ONNX_VERSION,
            created_by=None,
            description=f"The ONNX export of version {VERSION}, deployable as it is. "
            + description,
            task=info["task"],
        )
        splits = (
            (DatasetPurpose.CALIBRATION, "calib.npz", "training split"),
            (DatasetPurpose.EVALUATION, "eval.npz", "test split"),
        )
        for purpose, file, split in splits:
            actions.register_dataset(
                upload=_named(folder / file),
                name=f"{info['task']} {split}",
                purpose=purpose,
                created_by=None,
                description=info["description"],
            )
        return artifact


def _named(path: Path) -> io.BytesIO:
    upload = io.BytesIO(path.read_bytes())
    upload.name = path.name
    return upload
