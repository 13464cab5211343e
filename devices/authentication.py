"""Agents authenticate with `Authorization: Bearer <device credential>`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from devices.credentials import parse_device_credential, secrets_match
from devices.models import DeviceCredential


class DeviceAgent:
    """The authenticated principal of an agent request (not a Django user)."""

    is_authenticated = True
    is_active = True
    is_superuser = False

    def __init__(self, credential: DeviceCredential) -> None:
        self.credential = credential
        self.device = credential.device
        self.device_id = credential.device_id


class DeviceCredentialAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[DeviceAgent, DeviceCredential] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Authorization header must be 'Bearer <credential>'."
            )
        try:
            presented = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Malformed device credential.") from None
        parsed = parse_device_credential(presented)
        if parsed is None:
            raise exceptions.AuthenticationFailed("Malformed device credential.")
        device_id, _ = parsed
        credential = (
            DeviceCredential.objects.select_related("device")
            .filter(device_id=device_id, revoked_at__isnull=True)
            .first()
        )
        if credential is None or not secrets_match(presented, credential.key_hash):
            raise exceptions.AuthenticationFailed("Invalid device credential.")
        return DeviceAgent(credential), credential

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class DeviceCredentialScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "devices.authentication.DeviceCredentialAuthentication"
    name = "deviceCredential"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Device credential from enrollment.",
        }
