"""Management commands: scripted enrollment tokens and role bootstrap."""

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
