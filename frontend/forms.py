from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django import forms

from scheduling.actions import SchedulingError
from scheduling.api.serializers import (
    DEFAULT_OBJECTIVES,
    MAX_COMMENT_CHARS,
    SchedulingJobCreateSerializer,
)
from scheduling.models import Algorithm, Objective
from scheduling.templates import TEMPLATES, TemplateError, TemplateParameter

# Choice key -> (label, lifetime). Short lifetimes by default: a token is a secret.
EXPIRY_CHOICES = {
    "15m": ("15 minutes", timedelta(minutes=15)),
    "1h": ("1 hour", timedelta(hours=1)),
    "1d": ("1 day", timedelta(days=1)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
}


class EnrollmentTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="What the token is for, e.g. “junction 4 cameras”.",
    )
    uses = forms.IntegerField(
        min_value=1, max_value=100_000, initial=1, help_text="How many devices may enroll with it."
    )
    expires = forms.ChoiceField(
        label="Expires in",
        choices=[(key, label) for key, (label, _) in EXPIRY_CHOICES.items()],
        initial="1h",
    )

    def ttl(self) -> timedelta:
        return EXPIRY_CHOICES[self.cleaned_data["expires"]][1]


# --- scheduling -----------------------------------------------------------------------------
def _bounded(serializer_field: Any, **kwargs: Any) -> forms.IntegerField:
    """An integer field with the same bounds and default as the scheduling API's."""
    return forms.IntegerField(
        min_value=serializer_field.min_value,
        max_value=serializer_field.max_value,
        initial=serializer_field.default,
        **kwargs,
    )


class SchedulingForm(forms.Form):
    """A form whose action may refuse the input: `refuse` puts the error next to its field."""

    def refuse(self, error: SchedulingError) -> None:
        field = error.field if error.field in self.fields else None
        self.add_error(field, error.message)

    def bad_fields(self) -> list[str]:
        return [str(field.label) for field in self if field.errors]


def _template_parameters() -> dict[str, tuple[TemplateParameter, list[str]]]:
    """Parameter name -> its first definition and the names of the templates that take it."""
    parameters: dict[str, tuple[TemplateParameter, list[str]]] = {}
    for template in TEMPLATES.values():
        for parameter in template.parameters:
            parameters.setdefault(parameter.name, (parameter, []))[1].append(template.name)
    return parameters


class WorkloadTemplateForm(SchedulingForm):
    """A workload built from a template. Each template takes some of the parameter fields
    (the page shows only those); blank ones take the template's default."""

    name = forms.CharField(max_length=100, help_text="What the graph is, e.g. “junction 4”.")
    template = forms.ChoiceField(
        choices=[(t.name, t.title) for t in TEMPLATES.values()], initial="video-pipeline"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The seed last: it is the least interesting.
        parameters = sorted(_template_parameters().items(), key=lambda item: item[0] == "seed")
        for name, (parameter, takers) in parameters:
            field = forms.IntegerField(
                required=False,
                label=name.capitalize(),
                help_text=f"{parameter.description} Blank: the template's default.",
            )
            field.widget.attrs.update(
                {"data-templates": " ".join(takers), "placeholder": str(parameter.default)}
            )
            self.fields[name] = field

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        template = TEMPLATES.get(cleaned.get("template", ""))
        if template is None:
            return cleaned
        given = {
            p.name: cleaned[p.name] for p in template.parameters if cleaned.get(p.name) is not None
        }
        try:
            template.read_parameters(given)
        except TemplateError as error:
            field = error.parameter if error.parameter in self.fields else None
            self.add_error(field, error.message)
        cleaned["parameters"] = given
        return cleaned


class WorkloadUploadForm(SchedulingForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Ids of its own: it shares the page with the template form, which has a name too.
        kwargs.setdefault("auto_id", "upload_%s")
        super().__init__(*args, **kwargs)

    file = forms.FileField(
        help_text="A problem document (JSON; its tasks and edges are kept) or a WfCommons "
        "WfFormat workflow."
    )
    name = forms.CharField(max_length=100, required=False, help_text="Blank: the file's name.")

    def workload_name(self) -> str:
        return self.cleaned_data["name"] or Path(self.cleaned_data["file"].name).stem[:100]


_JOB_FIELDS = SchedulingJobCreateSerializer().fields


class SchedulingJobForm(SchedulingForm):
    objectives = forms.MultipleChoiceField(
        choices=Objective.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=list(DEFAULT_OBJECTIVES),
        help_text="Minimised together; the front trades them off.",
    )
    algorithm = forms.ChoiceField(
        choices=Algorithm.choices,
        initial=Algorithm.NSGA2,
        help_text="NSGA-III suits three objectives or more.",
    )
    generations = _bounded(_JOB_FIELDS["generations"], help_text="Rounds of the search.")
    population = _bounded(_JOB_FIELDS["population"], help_text="Placements per generation.")
    seed = _bounded(_JOB_FIELDS["seed"], help_text="The same seed, the same front.")

    def clean_objectives(self) -> list[str]:
        chosen = set(self.cleaned_data["objectives"])
        # In the stored order, whatever order the browser sent them in.
        return [value for value in Objective.values if value in chosen]


class CommentForm(SchedulingForm):
    comment = forms.CharField(
        max_length=MAX_COMMENT_CHARS,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
