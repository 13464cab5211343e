"""Formatting for the scheduling pages; static/frontend/scheduling/front.js mirrors `sig`."""

from __future__ import annotations

from typing import Any

from django import template

from frontend import scheduling_queries
from scheduling.models import Solution

register = template.Library()
DASH = "—"


@register.filter
def sig(value: object) -> str:
    """A measured value, to four significant digits below 1000, whole above, in scientific
    notation when tiny or huge."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DASH
    number = float(value)
    if number != 0 and (abs(number) >= 1e6 or abs(number) < 1e-3):
        return f"{number:.2e}"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.4g}"


@register.filter
def ratio(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DASH
    return f"\N{MULTIPLICATION SIGN}{value:.2f}"


@register.filter
def get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def objective_label(name: str) -> str:
    return scheduling_queries.OBJECTIVE_LABELS.get(name, name)


@register.filter
def solution_label(solution: Solution) -> str:
    return scheduling_queries.solution_label(solution)


@register.filter
def baseline_label(name: str) -> str:
    return scheduling_queries.baseline_label(name)
