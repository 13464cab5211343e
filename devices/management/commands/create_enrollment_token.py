"""`manage.py create_enrollment_token --uses N --expires 1h`: print a token for scripts."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.actions import create_enrollment_token

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise CommandError(
            f"--expires {text!r}: use a positive number and a unit, like 30m, 1h, 7d"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = "Create an enrollment token and print it (it is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--uses", type=int, default=1, help="How many devices may enroll.")
        parser.add_argument("--expires", default="1h", help="Lifetime, e.g. 30m, 1h, 7d.")
        parser.add_argument("--name", default="", help="A note to recognise the token by.")

    def handle(self, *args: Any, uses: int, expires: str, name: str, **options: Any) -> None:
        if uses < 1:
            raise CommandError(f"--uses {uses}: must be at least 1")
        _, secret = create_enrollment_token(
            created_by=None, name=name, max_uses=uses, ttl=parse_duration(expires)
        )
        self.stdout.write(secret)
