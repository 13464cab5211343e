"""The README's benchmark tables say what the committed results say."""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT


def scheduling_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Scheduling engine")
    return readme[start : readme.index("###", start + 3)]


def test_the_scheduling_table_matches_the_benchmark_results() -> None:
    results = json.loads((ROOT / "benchmarks/results/scheduling.json").read_text())
    rows = [line for line in scheduling_section().splitlines() if re.match(r"\| \w", line)][1:]
    assert len(rows) == len(results["instances"])
    for row, measured in zip(rows, results["instances"], strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1] == f"{measured['tasks']} x {measured['devices']}"
        assert cells[2] == str(measured["instance"]["generations"])
        assert cells[3] == f"{measured['hypervolume']:.3f}"
        assert cells[4] == f"{measured['all_baselines_hypervolume']:.3f}"
        assert cells[6] == ("yes" if measured["front_dominates_baselines"] else "NO")
        assert cells[7] == f"{measured['best_over_heft']:.3f}"
        assert cells[8] == f"{measured['best_over_lower_bound']:.2f}"
        assert cells[9] == f"{measured['wall_time_s']:.1f}"


def test_the_decoder_figures_match_the_benchmark_results() -> None:
    decoder = json.loads((ROOT / "benchmarks/results/scheduling.json").read_text())["decoder"]
    compiled = decoder["compiled"]["per_second"]
    speedup = compiled / decoder["interpreted"]["per_second"]
    text = " ".join(scheduling_section().split())
    assert f"runs {compiled:,.0f} solutions/s" in text
    assert f"{speedup:.0f} x the same code interpreted" in text


def test_the_compression_tables_match_the_benchmark_results() -> None:
    from benchmarks.compression import readme_tables

    results = json.loads((ROOT / "benchmarks/results/compression.json").read_text())
    assert readme_tables(results) in (ROOT / "README.md").read_text()


def test_the_rollout_table_matches_the_benchmark_results() -> None:
    from benchmarks.rollout import readme_table

    results = json.loads((ROOT / "benchmarks/results/rollout.json").read_text())
    assert readme_table(results) in (ROOT / "README.md").read_text()
