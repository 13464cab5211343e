"""Setup of the rollout benchmark, run as a subprocess with Django (`benchmarks.rollout`
never loads Django itself): an operator for the API, an enrollment token for the simulated
fleet, and two versions of a synthetic model per artifact size. Prints them as JSON."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--sizes-mb", type=int, nargs="+", required=True)
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.contrib.auth.models import Group, User

    from benchmarks.synthetic import linear_classifier
    from controlplane.roles import OPERATOR_GROUP
    from devices.actions import create_enrollment_token
    from models_hub import actions as hub

    password = secrets.token_urlsafe(12)
    user = User.objects.create_user("bench-operator", password=password)
    user.groups.add(Group.objects.get_or_create(name=OPERATOR_GROUP)[0])
    _, token = create_enrollment_token(
        created_by=None, max_uses=options.agents, ttl=timedelta(hours=2)
    )
    models: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for size_mb in options.sizes_mb:
            for version, seed in (("a", 1), ("b", 2)):
                path = linear_classifier(
                    Path(folder) / f"synthetic-{size_mb}mb-{version}.onnx", seed, size_mb << 20
                )
                with path.open("rb") as upload:
                    model = hub.register_model(
                        upload=upload,
                        name=f"synthetic-{size_mb}mb",
                        version=version,
                        created_by=None,
                        description="benchmarks.synthetic: a padded linear classifier",
                    )
                models.setdefault(str(size_mb), []).append(
                    {"id": str(model.pk), "size_bytes": model.size_bytes}
                )
    print(json.dumps({"username": user.username, "password": password, "token": token,
                      "models": models}))  # fmt: skip


if __name__ == "__main__":
    main()
