"""The control plane's Ed25519 signing keys: created on first use, rotated on request.

The key ring is a directory (`TRIAD_SIGNING_KEY_DIR`) shared by every process on the
machine (ASGI servers sign rollback orders, workers renew expiring ones), so its state
lives in files, not in memory: `keyring.json` names the active key and holds the public
keys and the rotation statements; each private key is a PEM file readable by its owner
only. Creation and rotation hold an exclusive lock, so two processes starting at once do
not make two keys. The document format itself (canonical bytes, key ids, signatures) is
`edge_agent.manifest`'s, the one implementation that the agents verify with.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from edge_agent.manifest import b64encode, key_id_of, public_key_raw, sign_document, sign_rotation

KEYRING_FILE = "keyring.json"
LOCK_FILE = ".lock"


class SigningKeyError(RuntimeError):
    """The key ring is unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    public_key: bytes  # raw, 32 bytes
    private_key: Ed25519PrivateKey
    created: str

    def public_info(self) -> dict[str, str]:
        """What an agent pins at enrollment."""
        return {
            "algorithm": "ed25519",
            "key_id": self.key_id,
            "public_key": b64encode(self.public_key),
        }


def utc_timestamp(moment: datetime | None = None) -> str:
    """An ISO 8601 UTC time with a Z, as the signed documents spell it."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class KeyRing:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def active(self) -> SigningKey:
        """The key that signs now; made (once, under the lock) if there is none yet."""
        ring = self._read()
        if ring is None:
            with self._locked():
                ring = self._read() or self._create_first()
        return self._load(ring["active"], ring)

    def sign(self, signed: dict[str, Any]) -> dict[str, Any]:
        return sign_document(self.active().private_key, signed)

    def rotations(self) -> list[dict[str, Any]]:
        """Rotation statements, oldest first: the chain from the first key to the active one."""
        ring = self._read()
        return list(ring["rotations"]) if ring else []

    def public_keys(self) -> list[dict[str, Any]]:
        ring = self._read()
        if ring is None:
            return []
        return [{**key, "active": key["key_id"] == ring["active"]} for key in ring["keys"]]

    def rotate(self) -> SigningKey:
        """Make a new active key and a rotation statement signed by the old one."""
        with self._locked():
            ring = self._read() or self._create_first()
            old = self._load(ring["active"], ring)
            new = self._new_key()
            statement = sign_rotation(old.private_key, new.private_key, new.created)
            ring["keys"].append(self._public_entry(new))
            ring["rotations"].append(statement)
            ring["active"] = new.key_id
            self._write(ring)
        return new

    # --- files ------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any] | None:
        path = self.directory / KEYRING_FILE
        try:
            ring = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SigningKeyError(f"cannot read {path}: {exc}") from exc
        if not isinstance(ring, dict) or not {"active", "keys", "rotations"} <= set(ring):
            raise SigningKeyError(f"{path} is not a Triad key ring")
        return ring

    def _write(self, ring: dict[str, Any]) -> None:
        path = self.directory / KEYRING_FILE
        tmp = path.with_name(f".{KEYRING_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(ring, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def _create_first(self) -> dict[str, Any]:
        key = self._new_key()
        ring = {"active": key.key_id, "keys": [self._public_entry(key)], "rotations": []}
        self._write(ring)
        return ring

    def _new_key(self) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        public = public_key_raw(private)
        key = SigningKey(key_id_of(public), public, private, utc_timestamp())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Created 0600 from the start: the private key is never readable by others.
        fd = os.open(self._private_path(key.key_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        return key

    def _load(self, key_id: str, ring: dict[str, Any]) -> SigningKey:
        entry = next((key for key in ring["keys"] if key["key_id"] == key_id), None)
        path = self._private_path(key_id)
        if entry is None:
            raise SigningKeyError(f"{self.directory / KEYRING_FILE} names no key {key_id}")
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise SigningKeyError(f"cannot load the private key {path}: {exc}") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(f"{path} is not an Ed25519 key")
        public = public_key_raw(private)
        if b64encode(public) != entry["public_key"]:
            raise SigningKeyError(f"{path} does not match the public key {key_id} in the ring")
        return SigningKey(key_id, public, private, entry["created"])

    def _private_path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.key"

    @staticmethod
    def _public_entry(key: SigningKey) -> dict[str, str]:
        return {
            "key_id": key.key_id,
            "public_key": key.public_info()["public_key"],
            "created": key.created,
        }


def keyring() -> KeyRing:
    return KeyRing(Path(settings.TRIAD_SIGNING_KEY_DIR))
