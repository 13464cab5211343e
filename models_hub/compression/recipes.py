"""Recipes: what to do to a model, as text an operator can type.

``int8-static``, ``int8-dynamic``, ``prune:R``, ``prune-distill:R`` and ``nas``, chained
with ``+`` (``prune-distill:0.5+int8-static`` prunes, distils, then quantises the result).
Every step of a chain is kept and measured as a variant of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from models_hub.compression.errors import CompressionError
from models_hub.compression.prune import check_ratio

QUANTISE = ("int8-static", "int8-dynamic")
PRUNE = ("prune", "prune-distill")
STEPS = (*QUANTISE, *PRUNE, "nas")
MAX_STEPS = 4


@dataclass(frozen=True)
class Step:
    kind: str
    ratio: float | None = None

    @property
    def name(self) -> str:
        return self.kind if self.ratio is None else f"{self.kind}:{self.ratio:g}"

    @property
    def needs_torch(self) -> bool:
        return self.kind in PRUNE or self.kind == "nas"


@dataclass(frozen=True)
class Recipe:
    steps: tuple[Step, ...]

    @property
    def text(self) -> str:
        return "+".join(step.name for step in self.steps)

    @property
    def needs_torch(self) -> bool:
        return any(step.needs_torch for step in self.steps)

    @property
    def needs_labels(self) -> bool:
        """Plain fine-tuning after pruning, and the search, learn from labels."""
        return any(step.kind in ("prune", "nas") for step in self.steps)


def parse_recipe(text: object, field: str = "recipe") -> Recipe:
    if not isinstance(text, str) or not text.strip():
        raise CompressionError(f"a recipe is needed: one or more of {', '.join(STEPS)}", field)
    parts = [part.strip() for part in text.strip().split("+")]
    if len(parts) > MAX_STEPS:
        raise CompressionError(f"at most {MAX_STEPS} steps, not {len(parts)}", field)
    steps = tuple(_step(part, field) for part in parts)
    _check_order(steps, field)
    return Recipe(steps)


def _step(text: str, field: str) -> Step:
    kind, _, argument = text.partition(":")
    if kind not in STEPS:
        raise CompressionError(f"unknown step '{text}'; one of {', '.join(STEPS)}", field)
    if kind in PRUNE:
        if not argument:
            raise CompressionError(f"'{kind}' needs a ratio, as in {kind}:0.5", field)
        try:
            ratio = float(argument)
        except ValueError:
            raise CompressionError(f"'{argument}' is not a pruning ratio", field) from None
        check_ratio(ratio)
        return Step(kind, ratio)
    if argument:
        raise CompressionError(f"'{kind}' takes no argument", field)
    return Step(kind)


def _check_order(steps: tuple[Step, ...], field: str) -> None:
    """Quantised models are ONNX: nothing that needs torch can follow a quantisation."""
    quantised = False
    for step in steps:
        if quantised:
            raise CompressionError(
                f"'{step.name}' cannot follow a quantisation step: quantise last", field
            )
        quantised = step.kind in QUANTISE
    if sum(step.kind == "nas" for step in steps) > 1 or (
        any(step.kind == "nas" for step in steps) and steps[0].kind != "nas"
    ):
        raise CompressionError("'nas' can only be the first step, once", field)
