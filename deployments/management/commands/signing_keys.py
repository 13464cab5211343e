"""`signing_keys show|rotate`: the key that signs model orders, and its rotation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from controlplane.signing import keyring
from deployments.actions import rotate_signing_key


class Command(BaseCommand):
    help = (
        "Show the signing keys (made on first use), or rotate: a new key, a rotation "
        "statement signed by the old one, and every outstanding order re-signed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["show", "rotate"])

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "rotate":
            key_id = rotate_signing_key()
            self.stdout.write(f"rotated: {key_id} signs from now on")
            return
        keyring().active()  # make the first key if there is none
        for key in keyring().public_keys():
            mark = "active " if key["active"] else "retired"
            self.stdout.write(f"{mark} {key['key_id']} {key['public_key']} {key['created']}")
