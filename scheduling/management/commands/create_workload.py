"""`python manage.py create_workload --template video-pipeline --param cameras=8 --name N`.

Builds a workload from a template, for scripts and the demo. `--if-missing` does nothing
when a workload of that name exists, so the demo can run it at every start.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduling import actions
from scheduling.models import Workload
from scheduling.templates import TEMPLATES


class Command(BaseCommand):
    help = "Create a scheduling workload from a template; prints its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--template", required=True, choices=sorted(TEMPLATES))
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a template parameter (integer), e.g. cameras=8; repeatable",
        )
        parser.add_argument("--if-missing", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        existing = Workload.objects.filter(name=options["name"]).first()
        if existing is not None and options["if_missing"]:
            self.stdout.write(str(existing.pk))
            return
        try:
            workload = actions.create_workload_from_template(
                name=options["name"],
                template=options["template"],
                parameters=_parameters(options["param"]),
                created_by=None,
            )
        except actions.SchedulingError as error:
            raise CommandError(f"--{error.field or 'template'}: {error.message}") from error
        self.stdout.write(str(workload.pk))


def _parameters(items: list[str]) -> dict[str, int]:
    parameters = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            parameters[name.strip()] = int(value)
        except ValueError:
            raise CommandError(f"--param: {item!r} is not NAME=INTEGER") from None
    return parameters
