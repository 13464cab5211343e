"""Workload templates: valid graphs, pinned to tiers, reproducible, parameters checked."""

from __future__ import annotations

import pytest

from scheduling.engine import TIERS, parse_workload
from scheduling.templates import TEMPLATES, TemplateError, get_template


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_builds_a_valid_graph_with_tier_pins_only(name: str) -> None:
    template = TEMPLATES[name]
    defaults = {p.name: p.minimum if p.name != "seed" else 7 for p in template.parameters}
    document = template.build(defaults)
    assert set(document) == {"tasks", "edges"}
    tasks, _ = parse_workload(document)
    assert {t.pinned_to for t in tasks} <= {None, *TIERS}
    assert all("runtime_s" not in t for t in document["tasks"])
    assert template.build(defaults) == document


def test_video_pipeline_shape() -> None:
    document = get_template("video-pipeline").build({"cameras": 3})
    ids = {t["id"] for t in document["tasks"]}
    assert {"decode-2", "detect-2", "track-2", "reid-2", "aggregate", "alert"} <= ids
    assert len(ids) == 14
    decoders = [t for t in document["tasks"] if t["id"].startswith("decode-")]
    assert {t["pinned_to"] for t in decoders} == {"end"}


def test_seed_changes_the_sizes() -> None:
    template = get_template("layered")
    assert template.build({"tasks": 20, "seed": 1}) != template.build({"tasks": 20, "seed": 2})


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"cameras": 0}, "cameras must be from 1 to 500, not 0."),
        ({"cameras": 501}, "cameras must be from 1 to 500, not 501."),
        ({"cameras": "2"}, "cameras must be an integer."),
        ({"cameras": 2.5}, "cameras must be an integer."),
        ({"cameras": True}, "cameras must be an integer."),
        ({"cameras": float("inf")}, "cameras must be an integer."),
        ({"seed": -1}, "seed must be from 0 to 2147483647, not -1."),
        ({"tasks": 10}, "tasks is not a parameter of video-pipeline; it takes cameras, seed."),
    ],
)
def test_bad_parameters_are_named(parameters: dict[str, object], message: str) -> None:
    with pytest.raises(TemplateError) as refused:
        get_template("video-pipeline").build(parameters)
    assert refused.value.message == message
    assert refused.value.parameter == next(iter(parameters))


def test_unknown_template() -> None:
    with pytest.raises(TemplateError, match="choose from video-pipeline"):
        get_template("mandelbrot")
