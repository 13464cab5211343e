"""Formatting for the model hub pages: sizes, counts, accuracies and latencies."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from django import template

from frontend.templatetags.scheduling_format import sig

register = template.Library()
DASH = "—"
MINUS = "\N{MINUS SIGN}"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _scaled(number: float, units: tuple[tuple[float, str], ...], plain: str) -> str:
    """Three significant digits in the largest unit that keeps the value at 1 or more
    (999,999 is "1 M", not "1000 k"), never in scientific notation."""
    for factor, unit in units:
        scaled = float(f"{number / factor:.3g}")
        if abs(scaled) >= 1:
            return f"{scaled:g} {unit}" if abs(scaled) < 1000 else f"{scaled:.0f} {unit}"
    return plain.format(number)


@register.filter
def filesize(value: object) -> str:
    """Bytes in binary units: 35.1 KiB, 4.20 MiB."""
    number = _number(value)
    if number is None:
        return DASH
    return _scaled(number, ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")), "{:.0f} B")


@register.filter
def count(value: object) -> str:
    """A large count to three significant digits with an SI prefix: 12.3 k, 4.56 M, 1.20 G."""
    number = _number(value)
    if number is None:
        return DASH
    return _scaled(number, ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")), "{:.0f}")


@register.filter
def percent(value: object) -> str:
    """A fraction as a percentage: 0.9725 -> 97.25 %."""
    number = _number(value)
    return DASH if number is None else f"{100 * number:.2f} %"


@register.filter
def points(value: object) -> str:
    """A change in percentage points, signed: +0.50 pt, or a minus sign (U+2212) and 1.25 pt."""
    number = _number(value)
    if number is None:
        return DASH
    if round(number, 2) == 0:
        return "±0.00 pt"
    return f"{'+' if number > 0 else MINUS}{abs(number):.2f} pt"


@register.filter
def ms(value: object) -> str:
    number = _number(value)
    return DASH if number is None else f"{sig(number)} ms"


@register.filter
def millijoules(value: object) -> str:
    number = _number(value)
    return DASH if number is None else f"{sig(number)} mJ"


@register.filter
def latency(metrics: Any, key: str) -> float | None:
    """`metrics.latency_ms.<threads>.<stat>` for a key such as `1_thread.p50`."""
    threads, _, stat = key.partition(".")
    if not isinstance(metrics, dict):
        return None
    value = ((metrics.get("latency_ms") or {}).get(threads) or {}).get(stat)
    return value if _number(value) is not None else None


@register.filter
def shape(value: object) -> str:
    """An array shape: [batch, 1, 16, 16], a free axis shown as ?."""
    if not isinstance(value, list | tuple):
        return DASH
    return "[" + ", ".join("?" if axis is None else str(axis) for axis in value) + "]"


@register.filter
def progress_number(value: object) -> str:
    """A job's progress (0 to 1) as a whole number of percent, for a bar's width."""
    return f"{100 * min(max(_number(value) or 0.0, 0.0), 1.0):.0f}"


@register.filter
def progress_pct(value: object) -> str:
    """A job's progress (0 to 1) in whole percent."""
    return f"{progress_number(value)} %"


@register.filter
def basename(name: object) -> str:
    """A stored file's own name, without its folders."""
    return PurePath(str(name or "")).name


@register.filter
def as_json(value: object) -> str:
    """A parameter's value as it was given (JSON), for display."""
    return json.dumps(value)
