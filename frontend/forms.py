from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from django import forms

from deployments.actions import MAX_PROFILE_RUNS, DeploymentError, RolloutPolicy, TargetSelector
from deployments.api.serializers import DeploymentCreateSerializer
from deployments.models import TargetKind
from devices.models import Device, Tier
from frontend import deployment_queries
from frontend.hub_queries import DatasetChoices
from models_hub.actions import MAX_SEED, ModelHubError
from models_hub.models import Dataset, DatasetPurpose, ModelArtifact, Variant
from scheduling.actions import SchedulingError
from scheduling.api.serializers import (
    DEFAULT_OBJECTIVES,
    MAX_COMMENT_CHARS,
    SchedulingJobCreateSerializer,
)
from scheduling.models import Algorithm, Decision, Objective
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

    def refuse(self, error: SchedulingError | DeploymentError) -> None:
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


# --- model hub ------------------------------------------------------------------------------
# The engine's recipe steps and the parameters each reads (models_hub.compression.STEPS and
# PARAMETERS), written out because importing the engine loads torch, which the web
# process does without until someone uploads a model; a test checks they agree.
RECIPE_STEPS = ("int8-static", "int8-dynamic", "prune", "prune-distill", "nas")
RECIPE_PRESETS = (
    "int8-static",
    "int8-dynamic",
    "prune:0.5",
    "prune-distill:0.5",
    "prune-distill:0.5+int8-static",
    "nas",
    "nas+int8-static",
)
PRUNE_IMPORTANCES = ("magnitude", "l1", "taylor", "lamp", "fpgm", "random")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Engine parameter -> (its form field, the steps that read it).
PARAMETER_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "calibration": ("calibration_method", ("int8-static",)),
    "per_channel": ("per_channel", ("int8-static", "int8-dynamic")),
    "epochs": ("epochs", ("prune", "prune-distill")),
    "learning_rate": ("learning_rate", ("prune", "prune-distill")),
    "importance": ("importance", ("prune", "prune-distill")),
    "temperature": ("temperature", ("prune-distill",)),
    "alpha": ("alpha", ("prune-distill",)),
}
DEFAULT = "Blank: the engine's default."


class ModelHubForm(SchedulingForm):
    """`refuse` takes the hub's errors, whose field may be dotted (`parameters.epochs`): a
    parameter with a field of its own gets the error there, any other the JSON field."""

    def refuse(self, error: SchedulingError | DeploymentError | ModelHubError) -> None:
        field = error.field or ""
        root, _, rest = field.partition(".")
        if root == "parameters" and rest:
            named = PARAMETER_FIELDS.get(rest, ("", ()))[0]
            field = named if named in self.fields else "parameters"
            message = error.message if named in self.fields else f"{rest}: {error.message}"
            self.add_error(field if field in self.fields else None, message)
            return
        self.add_error(field if field in self.fields else None, error.message)


def parse_shape(text: str) -> list[int]:
    """Axis lengths as people write them: `1, 16, 16`, `[1, 16, 16]` or `1x16x16`."""
    # `re` reads \N{...} in a raw string as the named character.
    separators = r"[\s,x\N{MULTIPLICATION SIGN}]+"
    parts = [p for p in re.split(separators, text.strip().strip("[]()").lower()) if p]
    if not parts or not all(p.isdecimal() for p in parts):
        raise forms.ValidationError("Axis lengths separated by commas, as in 1, 16, 16.")
    return [int(p) for p in parts]


class ModelUploadForm(ModelHubForm):
    file = forms.FileField(
        help_text="An ONNX model, a torch model saved whole (torch.save(model)), or TorchScript."
    )
    name = forms.CharField(max_length=100, required=False, help_text="Blank: the file's name.")
    version = forms.CharField(max_length=40, initial="1")
    input_shape = forms.CharField(
        max_length=100,
        required=False,
        help_text="One sample's shape without the batch axis, e.g. 1, 16, 16. Needed for "
        "torch models; an ONNX model whose axes are fixed says it itself.",
    )
    task = forms.CharField(max_length=100, required=False, help_text="What it does: “digits”…")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_input_shape(self) -> list[int] | None:
        text = self.cleaned_data["input_shape"]
        return parse_shape(text) if text.strip() else None

    def model_name(self) -> str:
        return self.cleaned_data["name"] or Path(self.cleaned_data["file"].name).stem[:100]


class DatasetUploadForm(ModelHubForm):
    file = forms.FileField(
        help_text="An .npz archive: inputs x (samples first) and, if labelled, integer labels "
        "y, one per sample."
    )
    name = forms.CharField(max_length=100, required=False, help_text="Blank: the file's name.")
    purpose = forms.ChoiceField(
        choices=DatasetPurpose.choices,
        initial=DatasetPurpose.CALIBRATION,
        help_text="Evaluation sets are held out: jobs measure every variant on one, and "
        "never calibrate or train on it.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def dataset_name(self) -> str:
        return self.cleaned_data["name"] or Path(self.cleaned_data["file"].name).stem[:100]


class DatasetChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        labels = "labelled" if obj.labelled else "no labels"
        return f"{obj.name} ({obj.purpose}, {obj.samples} samples, {labels})"


def _optional(field: forms.Field, steps: tuple[str, ...]) -> forms.Field:
    field.required = False
    field.widget.attrs["data-steps"] = " ".join(steps)
    return field


class CompressionJobForm(ModelHubForm):
    """A recipe, the data sets, and the parameters: simple fields for the common ones (the
    page shows those the recipe's steps read), and JSON for the rest."""

    recipe = forms.CharField(
        max_length=200,
        initial="int8-static",
        help_text="Steps joined by +: int8-static, int8-dynamic, prune:R and prune-distill:R "
        "(a ratio R of each layer's channels, at most 0.95), nas. Quantise last; pruning "
        "and the search need a torch model.",
    )
    calibration = DatasetChoiceField(
        queryset=Dataset.objects.none(),
        help_text="Calibrates int8-static; fine-tunes pruned models unless a training set "
        "is chosen.",
    )
    evaluation = DatasetChoiceField(
        queryset=Dataset.objects.none(),
        help_text="Held-out data every variant is measured on.",
    )
    training = DatasetChoiceField(
        queryset=Dataset.objects.none(),
        required=False,
        empty_label="The calibration set",
        help_text="Fine-tuning and search data.",
    )
    calibration_method = _optional(
        forms.ChoiceField(
            label="Calibration method",
            choices=[("", "Default (minmax)"), *((m, m) for m in CALIBRATION_METHODS)],
        ),
        PARAMETER_FIELDS["calibration"][1],
    )
    per_channel = _optional(
        forms.ChoiceField(
            label="Per-channel weights",
            choices=[("", "Default"), ("true", "Yes"), ("false", "No")],
            help_text="Default: yes for int8-static, no for int8-dynamic.",
        ),
        PARAMETER_FIELDS["per_channel"][1],
    )
    epochs = _optional(
        forms.IntegerField(help_text=f"Fine-tuning after pruning. {DEFAULT}"),
        PARAMETER_FIELDS["epochs"][1],
    )
    learning_rate = _optional(
        forms.FloatField(label="Learning rate", help_text=DEFAULT),
        PARAMETER_FIELDS["learning_rate"][1],
    )
    importance = _optional(
        forms.ChoiceField(
            choices=[("", "Default (magnitude)"), *((i, i) for i in PRUNE_IMPORTANCES)],
            help_text="How channels are ranked for pruning.",
        ),
        PARAMETER_FIELDS["importance"][1],
    )
    temperature = _optional(
        forms.FloatField(help_text=f"Distillation temperature. {DEFAULT}"),
        PARAMETER_FIELDS["temperature"][1],
    )
    alpha = _optional(
        forms.FloatField(help_text=f"Weight of the teacher's term, 0 to 1. {DEFAULT}"),
        PARAMETER_FIELDS["alpha"][1],
    )
    parameters = forms.CharField(
        label="More parameters (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"calibration_samples": 128}'}),
        help_text="Any other parameter as a JSON object; docs/compression.md lists them.",
    )
    seed = forms.IntegerField(min_value=0, max_value=MAX_SEED, initial=0)

    def __init__(self, *args: Any, choices: DatasetChoices, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        roles = {
            "calibration": choices.calibration,
            "evaluation": choices.evaluation,
            "training": choices.calibration,
        }
        for name, datasets in roles.items():
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = Dataset.objects.filter(pk__in=[d.pk for d in datasets])
        self.fields["recipe"].widget.attrs["list"] = "recipe-presets"

    def clean_parameters(self) -> dict[str, Any]:
        text = self.cleaned_data["parameters"].strip()
        if not text:
            return {}
        try:
            parameters = json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(f"Not valid JSON: {error}") from None
        if not isinstance(parameters, dict):
            raise forms.ValidationError('A JSON object, as in {"epochs": 5}.')
        return parameters

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        parameters = dict(cleaned.get("parameters") or {})
        for name, (field, _) in PARAMETER_FIELDS.items():
            value = cleaned.get(field)
            if value is None or value == "":
                continue
            if name in parameters:
                self.add_error(field, f"{name} is in the JSON parameters too; give it once.")
                continue
            parameters[name] = value == "true" if field == "per_channel" else value
        cleaned["parameters"] = parameters
        return cleaned

    def parameter_fields(self) -> list[forms.BoundField]:
        return [self[field] for field, _ in PARAMETER_FIELDS.values()]

    def job_arguments(self) -> dict[str, Any]:
        """What `submit_compression_job` takes, less the model and the user."""
        data = self.cleaned_data
        return {
            name: data[name]
            for name in ("recipe", "calibration", "evaluation", "training", "parameters", "seed")
        }


# --- rollouts -------------------------------------------------------------------------------
_DEPLOY_FIELDS = DeploymentCreateSerializer().fields
_LATENCY_BUDGET: Any = _DEPLOY_FIELDS["latency_budget_ms"]
# The field that holds each target kind's argument: a refusal of "the targets" goes there.
TARGET_FIELDS: dict[str, str] = {
    TargetKind.DEVICES: "devices",
    TargetKind.TIER: "tier",
    TargetKind.LABELS: "labels",
    TargetKind.DECISION: "decision",
}
LABEL_KEY_CHARS = 100
LABEL_VALUE_CHARS = 200


class ModelArtifactChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} {obj.version}"


class VariantChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.model.name} {obj.model.version} · {obj.name} (job {str(obj.job_id)[:8]})"


class DeviceChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.tier}, {obj.status})"


class DecisionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        from frontend.scheduling_queries import solution_label

        return (
            f"{obj.job.workload.name}: {solution_label(obj.solution)} of job "
            f"{str(obj.job_id)[:8]} ({len(obj.solution.assignment)} tasks)"
        )


def parse_labels(text: str) -> dict[str, str]:
    """KEY=VALUE lines, as the fleet page writes labels; blank lines are skipped."""
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise forms.ValidationError(f"Line {number} is not KEY=VALUE: {line.strip()!r}.")
        if len(key) > LABEL_KEY_CHARS or len(value) > LABEL_VALUE_CHARS:
            raise forms.ValidationError(
                f"Line {number}: keys have at most {LABEL_KEY_CHARS} characters, values "
                f"{LABEL_VALUE_CHARS}."
            )
        if labels.get(key, value) != value:
            raise forms.ValidationError(f"{key} is given twice, with different values.")
        labels[key] = value
    return labels


class DeploymentForm(SchedulingForm):
    """What to deploy (an ONNX model or a variant), to which devices, and how carefully.

    Each target kind reads one argument field (the page shows only that one); the others
    are ignored. `deployments.actions.create_deployment` checks the rest, and its refusals
    land on the field they name.
    """

    name = forms.CharField(
        max_length=200, required=False, help_text="Blank: named after the model and its targets."
    )
    model = ModelArtifactChoiceField(
        label="ONNX model",
        queryset=ModelArtifact.objects.none(),
        required=False,
        empty_label="— none: deploy a variant —",
        help_text="A registered ONNX model as it is.",
    )
    variant = VariantChoiceField(
        queryset=Variant.objects.none(),
        required=False,
        empty_label="— none: deploy the model —",
        help_text="Or a compressed variant (of any model: compression exports them to ONNX).",
    )
    target_kind = forms.ChoiceField(
        label="Targets",
        choices=TargetKind.choices,
        initial=TargetKind.DEVICES,
        widget=forms.RadioSelect,
    )
    devices = DeviceChoiceField(
        queryset=Device.objects.none(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text="Retired devices are not offered. Ctrl or Shift to choose several.",
    )
    tier = forms.ChoiceField(choices=[("", "—"), *Tier.choices], required=False)
    labels = forms.CharField(
        label="Label selector",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "site=north\nrole=camera"}),
        help_text="KEY=VALUE, one per line: devices that carry them all.",
    )
    decision = DecisionChoiceField(
        label="Scheduling decision",
        queryset=Decision.objects.none(),
        required=False,
        empty_label="—",
        help_text="An approved decision: the devices its solution places tasks on.",
    )
    tasks = forms.CharField(
        max_length=2000,
        required=False,
        help_text="Only the devices of these task ids (commas or spaces). Blank: every task.",
    )
    canary_percent = _bounded(
        _DEPLOY_FIELDS["canary_percent"],
        label="Canary %",
        help_text="Of the targets, released first (at least one device unless 0).",
    )
    batch_percent = _bounded(
        _DEPLOY_FIELDS["batch_percent"],
        label="Batch %",
        help_text="Of the targets, released per batch once the phase before has settled.",
    )
    max_failed_percent = _bounded(
        _DEPLOY_FIELDS["max_failed_percent"],
        label="Max failed %",
        help_text="Of the released devices; above it everything rolls back. 0: any failure.",
    )
    device_timeout_s = _bounded(
        _DEPLOY_FIELDS["device_timeout_s"],
        label="Per-device timeout (s)",
        help_text="A device that has not confirmed by then counts as failed.",
    )
    latency_budget_ms = forms.FloatField(
        label="Latency budget (ms)",
        required=False,
        min_value=_LATENCY_BUDGET.min_value,
        help_text="The health check's p50 on the device must stay under it. Blank: none.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = {
            "model": deployment_queries.onnx_models(),
            "variant": deployment_queries.variants(),
            "devices": deployment_queries.deployable_devices(),
            "decision": deployment_queries.approved_decisions(),
        }
        for name, queryset in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = queryset
        tier = self.fields["tier"]
        assert isinstance(tier, forms.ChoiceField)
        counts = deployment_queries.tier_counts()
        tier.choices = [
            ("", "—"),
            *((value, f"{label} ({counts[value]} devices)") for value, label in Tier.choices),
        ]
        for kind, name in TARGET_FIELDS.items():
            self.fields[name].widget.attrs["data-kind"] = kind
        self.fields["tasks"].widget.attrs["data-kind"] = TargetKind.DECISION

    def clean_labels(self) -> dict[str, str]:
        return parse_labels(self.cleaned_data["labels"])

    def clean_tasks(self) -> list[str]:
        tasks = [task for task in re.split(r"[\s,]+", self.cleaned_data["tasks"]) if task]
        return list(dict.fromkeys(tasks))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        chosen = cleaned.get("model") or cleaned.get("variant")
        if not chosen and not self.has_error("model") and not self.has_error("variant"):
            self.add_error("model", "Choose an ONNX model or a variant to deploy.")
        kind = cleaned.get("target_kind")
        argument = TARGET_FIELDS.get(kind or "")
        if argument and not self.has_error(argument) and not cleaned.get(argument):
            self.add_error(argument, "Required for these targets.")
        return cleaned

    def refuse(self, error: SchedulingError | DeploymentError) -> None:
        """Put the action's refusal next to its field; "the targets" (devices already in a
        rollout) next to the field that chose them."""
        field = error.field
        if field == "targets":
            field = TARGET_FIELDS.get(self.cleaned_data["target_kind"])
        self.add_error(field if field in self.fields else None, error.message)

    def deployment_arguments(self) -> dict[str, Any]:
        """What `create_deployment` takes, less the user. Only the chosen kind's argument
        is read: the fields of the other kinds may hold whatever was typed before."""
        data = self.cleaned_data
        variant: Variant | None = data["variant"]
        kind = data["target_kind"]
        argument: dict[str, Any] = {TARGET_FIELDS[kind]: data[TARGET_FIELDS[kind]]}
        if kind == TargetKind.DEVICES:
            argument["devices"] = [device.pk for device in data["devices"]]
        elif kind == TargetKind.DECISION:
            argument = {"decision": data["decision"].pk, "tasks": data["tasks"]}
        return {
            "model": data["model"] or (variant.model if variant else None),
            "variant": variant,
            "name": data["name"],
            "selector": TargetSelector(kind=kind, **argument),
            "policy": RolloutPolicy(
                canary_percent=data["canary_percent"],
                batch_percent=data["batch_percent"],
                max_failed_percent=data["max_failed_percent"],
                device_timeout_s=data["device_timeout_s"],
                latency_budget_ms=data["latency_budget_ms"],
            ),
        }


class ProfilingForm(SchedulingForm):
    """Hardware-in-the-loop profiling of one model: the original (an ONNX model) or one of
    its variants, timed by the agents of the chosen devices on their own hardware."""

    variant = forms.ChoiceField(label="What to time", required=False)
    devices = DeviceChoiceField(
        queryset=Device.objects.none(),
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="Their agents download it (signed and verified), time it, and install "
        "nothing. Ctrl or Shift to choose several.",
    )
    runs = forms.IntegerField(
        min_value=1,
        max_value=MAX_PROFILE_RUNS,
        initial=50,
        help_text="Inferences timed at batch 1.",
    )

    def __init__(self, *args: Any, model: ModelArtifact, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "profile_%s")
        super().__init__(*args, **kwargs)
        self.model = model
        variants = [(str(v.pk), f"variant {v.name}") for v in model.variants.order_by("name")]
        original = [("", "the model itself")] if model.framework == "onnx" else []
        variant = self.fields["variant"]
        assert isinstance(variant, forms.ChoiceField)
        variant.choices = [*original, *variants]
        devices = self.fields["devices"]
        assert isinstance(devices, DeviceChoiceField)
        devices.queryset = deployment_queries.deployable_devices()

    def chosen_variant(self) -> Variant | None:
        chosen = self.cleaned_data.get("variant")
        return self.model.variants.get(pk=chosen) if chosen else None
