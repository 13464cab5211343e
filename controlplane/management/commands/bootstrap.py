"""Create the role groups and, on request, the `operator` and `admin` users."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from controlplane.roles import ADMIN_GROUP, OPERATOR_GROUP


class Command(BaseCommand):
    help = "Create the operator and admin groups; with --users, demo users with new passwords."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", action="store_true", help="Create/reset demo users.")

    @transaction.atomic
    def handle(self, *args: Any, users: bool, **options: Any) -> None:
        operators, _ = Group.objects.get_or_create(name=OPERATOR_GROUP)
        admins, _ = Group.objects.get_or_create(name=ADMIN_GROUP)
        if not users:
            return
        for username, group, staff in (("operator", operators, False), ("admin", admins, True)):
            password = secrets.token_urlsafe(9)
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            # Admins use the Django admin too, so they are staff with every permission.
            user.is_staff = user.is_superuser = staff
            user.save()
            user.groups.set([group])
            self.stdout.write(f"  {username:9} password: {password}")
