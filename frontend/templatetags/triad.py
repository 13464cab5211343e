"""Number formatting shared by the server-rendered pages; static/frontend/triad.js mirrors it."""

from __future__ import annotations

from django import template

register = template.Library()
DASH = "—"


def _number(value: object) -> float | None:
    # Unset values arrive as None, or as "" in the empty row the fleet page's JS clones.
    return float(value) if isinstance(value, int | float) else None


@register.filter
def pct(value: object) -> str:
    number = _number(value)
    return DASH if number is None else f"{number:.1f} %"


@register.filter
def watts(value: object) -> str:
    number = _number(value)
    return DASH if number is None else f"{number:.1f} W"


@register.filter
def joules(value: object) -> str:
    number = _number(value)
    if number is None:
        return DASH
    for factor, unit in ((1e9, "GJ"), (1e6, "MJ"), (1e3, "kJ")):
        if abs(number) >= factor:
            return f"{number / factor:.1f} {unit}"
    return f"{number:.0f} J"


@register.filter
def meter(value: object) -> str:
    """A CSS width for a 0-100 % bar."""
    return f"{min(max(_number(value) or 0.0, 0.0), 100.0):.1f}%"


@register.filter
def mebibytes(value: int) -> str:
    return f"{value / 1024:.1f} GiB" if value >= 1024 else f"{value} MiB"
