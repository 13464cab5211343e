from __future__ import annotations

import pytest

from models_hub.compression import CompressionError, parse_recipe


def test_recipes_parse_into_steps() -> None:
    recipe = parse_recipe("prune-distill:0.5+int8-static")
    assert [step.name for step in recipe.steps] == ["prune-distill:0.5", "int8-static"]
    assert recipe.text == "prune-distill:0.5+int8-static"
    assert recipe.needs_torch and not recipe.needs_labels
    assert parse_recipe("prune:0.3").needs_labels
    assert not parse_recipe("int8-dynamic").needs_torch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "a recipe is needed"),
        ("int4", "unknown step"),
        ("prune", "needs a ratio"),
        ("prune:abc", "not a pruning ratio"),
        ("prune:0", "above 0"),
        ("prune:1.5", "at most 0.95"),
        ("prune:-0.2", "above 0"),
        ("int8-static:2", "takes no argument"),
        ("int8-static+prune:0.5", "quantise last"),
        ("int8-static+int8-dynamic", "quantise last"),
        ("prune:0.5+nas", "first step"),
        ("prune:0.1+prune:0.1+prune:0.1+prune:0.1+prune:0.1", "at most 4 steps"),
    ],
)
def test_bad_recipes_are_refused(text: str, expected: str) -> None:
    with pytest.raises(CompressionError) as caught:
        parse_recipe(text)
    assert caught.value.field == "recipe"
    assert expected in caught.value.message
