"""Secrets handed to agents and operators. Only SHA-256 hashes are stored.

The secrets carry 256 bits of randomness, so a fast unsalted hash is safe here (there is
nothing to brute-force) and keeps the heartbeat path cheap, unlike a password hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

TOKEN_PREFIX = "tet_"
CREDENTIAL_PREFIX = "dev_"


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def secrets_match(value: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(value), expected_hash)


def new_enrollment_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_device_credential(device_id: uuid.UUID) -> str:
    return f"{CREDENTIAL_PREFIX}{device_id.hex}.{secrets.token_urlsafe(32)}"


def parse_device_credential(credential: str) -> tuple[uuid.UUID, str] | None:
    """Split a credential into the device id it names and its secret part."""
    if not credential.startswith(CREDENTIAL_PREFIX) or "." not in credential:
        return None
    device_hex, _, secret = credential[len(CREDENTIAL_PREFIX) :].partition(".")
    try:
        return uuid.UUID(hex=device_hex), secret
    except ValueError:
        return None
