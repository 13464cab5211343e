"""Test helpers that play the control plane's signing side: keys, manifests, orders."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.manifest import MANIFEST_TYPE, sign_document

DIGITS_IO: dict[str, Any] = {
    "inputs": [{"name": "input", "shape": [None, 4], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": [None, 3], "dtype": "float32"}],
}


def make_key(name: str) -> Ed25519PrivateKey:
    """A deterministic key per name, so failures are reproducible."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def manifest_body(
    version: int,
    data: bytes | None,
    io: dict[str, Any] | None = None,
    expires_in: timedelta = timedelta(days=7),
    now: datetime | None = None,
    size: int | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    """The ``signed`` object of a manifest for ``data`` (None: the run-nothing order)."""
    now = now or datetime.now(UTC)
    body: dict[str, Any] = {
        "_type": MANIFEST_TYPE,
        "version": version,
        "created": iso(now),
        "expires": iso(now + expires_in),
        "artifact": None,
        "model": None,
        "io": None,
    }
    if data is not None:
        body["artifact"] = {
            "sha256": sha256 or hashlib.sha256(data).hexdigest(),
            "size": len(data) if size is None else size,
            "format": "onnx",
        }
        body["model"] = {
            "id": "m-1",
            "name": "tiny-matmul",
            "version": "1.0",
            "variant_id": None,
            "variant": None,
        }
        body["io"] = io if io is not None else DIGITS_IO
    return body


def signed_manifest(key: Ed25519PrivateKey, version: int, data: bytes | None, **kw: Any) -> dict:
    return sign_document(key, manifest_body(version, data, **kw))
