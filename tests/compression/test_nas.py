"""The architecture search: its family, its latency table, and the search itself.

Budgets are tiny (a few hundred digits, two epochs, populations of four) so that the file
runs in seconds; the default budget's figures are in the benchmark, not here.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models_hub.compression import nas
from models_hub.compression.data import Data
from models_hub.compression.errors import CompressionCancelled, CompressionError
from models_hub.compression.export import export_onnx
from models_hub.compression.measure import DEFAULT_DEVICE_PROFILES, DeviceProfile, latency_ms
from models_hub.compression.tasks import load_task

DIGITS = (1, 16, 16)
SPACE = nas.DEFAULT_SPACE
SMALLEST: nas.Genome = (0,) * SPACE.n_genes
LARGEST: nas.Genome = tuple(int(u) for u in SPACE.upper)
# The search tests check the search, not the family: a smaller family trains faster.
SMALL_SPACE = nas.SearchSpace(
    stages=tuple(
        nas.StageChoices(widths, 2, depths=(1, 2), kernels=(3, 5), expansions=(2, 3))
        for widths in ((8, 12), (12, 16), (16, 24))
    ),
    stem_channels=8,
    head_channels=32,
)
TINY = nas.NasOptions(
    population=4, generations=2, epochs=2, batch_size=32, seed=3, space=SMALL_SPACE
)


def uniform(index: int) -> nas.Genome:
    """Every gene at `index`, or at its last choice where it has fewer."""
    return tuple(min(index, int(u)) for u in SPACE.upper)


@pytest.fixture(scope="module")
def few_digits() -> Data:
    return load_task("digits").train.take(300)


@pytest.fixture(scope="module")
def table() -> nas.LatencyTable:
    return nas.LatencyTable()


@pytest.fixture(scope="module")
def searched(few_digits: Data, table: nas.LatencyTable) -> tuple[nas.NasResult, list[float]]:
    fractions: list[float] = []
    threads = torch.get_num_threads()
    result = nas.search(
        few_digits, DIGITS, 10, TINY, on_progress=lambda f, _: fractions.append(f), table=table
    )
    assert torch.get_num_threads() == threads, "the search must give torch its threads back"
    return result, fractions


# --- the family ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [DIGITS, (1, 32, 32), (3, 64, 64)])
def test_every_choice_builds_a_runnable_model_of_the_right_output(
    shape: tuple[int, int, int],
) -> None:
    # Three genomes cover every choice of every gene.
    for index in range(3):
        model = nas.build(nas.decode(uniform(index)), shape, 7).eval()
        with torch.inference_mode():
            assert model(torch.zeros(2, *shape)).shape == (2, 7)


def test_decode_reads_each_gene_as_an_index_into_its_stage_choices() -> None:
    stages = nas.decode(LARGEST)
    assert [s.channels for s in stages] == [c.widths[-1] for c in SPACE.stages]
    assert {(s.depth, s.kernel, s.expansion) for s in stages} == {(3, 7, 6)}
    assert [s.stride for s in stages] == [c.stride for c in SPACE.stages]
    assert SPACE.size == (3 * 3 * 3 * 2) ** 4
    assert "64x3 k7 e6 s1" in nas.describe(stages)


@pytest.mark.parametrize("genome", [SMALLEST[:-1], (*SMALLEST[:-1], 2), (-1, *SMALLEST[1:])])
def test_a_malformed_genome_is_refused(genome: nas.Genome) -> None:
    with pytest.raises(CompressionError) as error:
        nas.decode(genome)
    assert error.value.field == "genome"


@pytest.mark.parametrize("shape", [DIGITS, (1, 32, 32), (3, 64, 64)])
def test_the_table_times_the_parts_the_model_is_built_from(shape: tuple[int, int, int]) -> None:
    stages = nas.decode(uniform(1))
    model = nas.build(stages, shape, 10).eval()
    seen: list[tuple[int, ...]] = []
    for block in model.blocks:
        block.register_forward_hook(lambda _m, args, _o: seen.append(tuple(args[0].shape[1:])))
    with torch.inference_mode():
        model(torch.zeros(1, *shape))
    parts = nas.network_parts(stages, shape, 10)
    assert [p.kind for p in parts] == ["stem"] + ["block"] * len(model.blocks) + ["head"]
    assert [p.input_shape for p in parts[1:-1]] == seen


# --- the latency table --------------------------------------------------------------------


def test_a_larger_network_is_predicted_slower(table: nas.LatencyTable) -> None:
    times = [table.host_ms(nas.decode(uniform(i)), DIGITS, 10) for i in range(3)]
    assert times[0] < times[1] < times[2]
    deeper = list(SMALLEST)
    deeper[1] = 2  # the first stage's depth, 1 -> 3 blocks
    assert table.host_ms(nas.decode(tuple(deeper)), DIGITS, 10) > times[0]


def test_prediction_scales_inversely_with_the_device_gflops(table: nas.LatencyTable) -> None:
    stages = nas.decode(uniform(1))
    slow, fast = DeviceProfile("slow", 10.0, 5.0), DeviceProfile("fast", 40.0, 5.0)
    assert table.predict_ms(stages, DIGITS, 10, slow) == pytest.approx(
        4 * table.predict_ms(stages, DIGITS, 10, fast)
    )
    host = table.host_ms(stages, DIGITS, 10)
    edge = DEFAULT_DEVICE_PROFILES[1]
    assert table.predict_ms(stages, DIGITS, 10, edge) == pytest.approx(
        host * table.host_gflops / edge.gflops
    )


def test_prediction_agrees_with_the_measured_whole_network(
    table: nas.LatencyTable, tmp_path: Path
) -> None:
    # At 32x32 the networks are large enough that onnxruntime's per-run cost, which the
    # table counts once, does not drown the difference between them.
    shape = (1, 32, 32)
    predicted, measured = [], []
    for index in range(3):
        stages = nas.decode(uniform(index))
        predicted.append(table.host_ms(stages, shape, 10))
        path = export_onnx(nas.build(stages, shape, 10), shape, tmp_path / f"{index}.onnx")
        measured.append(latency_ms(path, np.zeros(shape, np.float32), threads=1)["p50"])
    print("predicted", predicted, "measured", measured)
    for guess, truth in zip(predicted, measured, strict=True):
        assert truth / 3 < guess < truth * 3
    assert measured[0] < measured[2] and predicted[0] < predicted[2]


def test_a_saved_table_predicts_the_same_without_measuring(
    table: nas.LatencyTable, tmp_path: Path
) -> None:
    stages = nas.decode(uniform(2))
    expected = table.host_ms(stages, DIGITS, 10)
    table.save(tmp_path / "lut.json")
    loaded = nas.LatencyTable.load(tmp_path / "lut.json")
    assert loaded.host_ms(stages, DIGITS, 10) == pytest.approx(expected)
    assert loaded.measuring_s == 0.0 and loaded.host_gflops == table.host_gflops


def test_an_unreadable_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lut.json").write_text('{"entries": {}}')
    with pytest.raises(CompressionError) as error:
        nas.LatencyTable.load(tmp_path / "lut.json")
    assert error.value.field == "lut"


# --- the search ---------------------------------------------------------------------------


def test_search_returns_a_sorted_front_that_nothing_evaluated_dominates(
    searched: tuple[nas.NasResult, list[float]],
) -> None:
    result, _ = searched
    print(
        f"search: {result.seconds:.1f} s, {result.evaluated} trained, "
        f"{result.lut_entries} parts timed in {result.lut_seconds:.1f} s; front "
        + ", ".join(f"{c.accuracy:.3f}@{c.predicted_latency_ms:.4f}ms" for c in result.front)
    )
    front = result.front
    assert front
    latencies = [c.predicted_latency_ms for c in front]
    assert latencies == sorted(latencies)
    for member, other in itertools.product(front, result.candidates):
        assert not (
            other.accuracy >= member.accuracy
            and other.predicted_latency_ms <= member.predicted_latency_ms
            and (
                other.accuracy > member.accuracy
                or other.predicted_latency_ms < member.predicted_latency_ms
            )
        )
    assert 4 <= result.evaluated <= TINY.population * TINY.generations
    assert len({c.genome for c in result.candidates}) == result.evaluated
    assert [h.generation for h in result.history] == [1, 2]
    assert result.best.accuracy == max(c.accuracy for c in front)


def test_front_members_are_trained_models_matching_their_genome(
    searched: tuple[nas.NasResult, list[float]], few_digits: Data
) -> None:
    result, _ = searched
    for candidate in result.front:
        assert candidate.stages == SMALL_SPACE.decode(candidate.genome)
        assert not candidate.model.training
        with torch.inference_mode():
            out = candidate.model(torch.from_numpy(few_digits.x[:3]))
        assert out.shape == (3, 10)
        assert candidate.params == sum(p.numel() for p in candidate.model.parameters())
        assert 0.0 <= candidate.accuracy <= 1.0
    assert result.best.accuracy > 0.3  # ten classes: chance is 0.1
    assert result.as_dict()["front"][0]["genome"] == list(result.front[0].genome)


def test_progress_rises_to_one(searched: tuple[nas.NasResult, list[float]]) -> None:
    _, fractions = searched
    assert fractions == sorted(fractions)
    assert fractions[0] > 0.0 and fractions[-1] == pytest.approx(1.0)


def test_the_same_seed_and_table_reproduce_the_front(
    searched: tuple[nas.NasResult, list[float]], few_digits: Data, table: nas.LatencyTable
) -> None:
    first, _ = searched
    again = nas.search(few_digits, DIGITS, 10, TINY, table=table)
    assert [c.genome for c in again.front] == [c.genome for c in first.front]
    assert [c.accuracy for c in again.front] == [c.accuracy for c in first.front]
    assert [c.genome for c in again.candidates] == [c.genome for c in first.candidates]


def test_an_unreachable_latency_budget_is_refused(
    few_digits: Data, table: nas.LatencyTable
) -> None:
    options = dataclasses.replace(TINY, generations=1, max_latency_ms=1e-9)
    with pytest.raises(CompressionError) as error:
        nas.search(few_digits.take(40), DIGITS, 10, options, table=table)
    assert error.value.field == "parameters.max_latency_ms"


def test_pareto_front_leaves_out_infeasible_and_dominated_candidates() -> None:
    def candidate(accuracy: float, latency: float, feasible: bool = True) -> nas.Candidate:
        genome = (round(accuracy * 100), round(latency * 100))
        return nas.Candidate(genome, (), accuracy, latency, latency, 0, feasible, nn.Identity())

    points = [
        candidate(0.9, 1.0),
        candidate(0.8, 0.5),
        candidate(0.8, 0.7),  # dominated by 0.8@0.5
        candidate(0.95, 0.4, feasible=False),
        candidate(0.7, 0.5),  # dominated
    ]
    assert [(c.accuracy, c.predicted_latency_ms) for c in nas.pareto_front(points)] == [
        (0.8, 0.5),
        (0.9, 1.0),
    ]


def test_stopping_cancels_the_search(few_digits: Data, table: nas.LatencyTable) -> None:
    with pytest.raises(CompressionCancelled):
        nas.search(few_digits, DIGITS, 10, TINY, should_stop=lambda: True, table=table)


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"population": 3}, "parameters.population"),
        ({"population": 65}, "parameters.population"),
        ({"population": 8.0}, "parameters.population"),
        ({"generations": 0}, "parameters.generations"),
        ({"generations": 31}, "parameters.generations"),
        ({"epochs": 0}, "parameters.epochs"),
        ({"epochs": 31}, "parameters.epochs"),
        ({"seed": -1}, "parameters.seed"),
        ({"validation_fraction": 0.9}, "parameters.validation_fraction"),
        ({"max_latency_ms": 0.0}, "parameters.max_latency_ms"),
        ({"profile": DeviceProfile("broken", 0.0, 1.0)}, "parameters.profile"),
    ],
)
def test_bad_options_are_refused(change: dict[str, object], field: str) -> None:
    with pytest.raises(CompressionError) as error:
        nas.NasOptions(**change)  # type: ignore[arg-type]
    assert error.value.field == field


def test_parse_reads_job_parameters() -> None:
    options = nas.NasOptions.parse(
        {"population": 6, "generations": 2, "nas_epochs": 4, "device_profile": "end"},
        DEFAULT_DEVICE_PROFILES,
        seed=5,
    )
    assert (options.population, options.generations, options.epochs, options.seed) == (
        6,
        2,
        4,
        5,
    )
    assert options.profile == DEFAULT_DEVICE_PROFILES[0]
    assert nas.NasOptions.parse({}).profile == nas.DEFAULT_PROFILE
    only = (DeviceProfile("phone", 20.0, 3.0),)
    assert nas.NasOptions.parse({}, only).profile == only[0]


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"nas_epochs": 0}, "parameters.nas_epochs"),
        ({"population": "8"}, "parameters.population"),
        ({"device_profile": "toaster"}, "parameters.device_profile"),
        ({"device_profile": 1}, "parameters.device_profile"),
        ({"max_latency_ms": "fast"}, "parameters.max_latency_ms"),
    ],
)
def test_parse_names_the_bad_parameter(parameters: dict[str, object], field: str) -> None:
    with pytest.raises(CompressionError) as error:
        nas.NasOptions.parse(parameters, DEFAULT_DEVICE_PROFILES)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("data", "shape", "classes", "field"),
    [
        (lambda d: Data(d.x, None), DIGITS, 10, "calib"),
        (lambda d: d, (1, 8, 8), 10, "calib"),
        (lambda d: d, (256,), 10, "calib"),
        (lambda d: d.take(10), DIGITS, 10, "calib"),
        (lambda d: d, DIGITS, 5, "calib"),  # labels 5 to 9 cannot be predicted
        (lambda d: d, DIGITS, 1, "model"),
    ],
)
def test_unusable_data_is_refused(
    few_digits: Data,
    data: Callable[[Data], Data],
    shape: tuple[int, ...],
    classes: int,
    field: str,
) -> None:
    with pytest.raises(CompressionError) as error:
        nas.search(data(few_digits), shape, classes, TINY)
    assert error.value.field == field
