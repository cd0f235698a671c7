"""The benchmarks' results and docs/performance.md: the page is what the results give,
every accuracy has its baseline, and the harness records where and how a figure was measured."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from bench import harness, report

REPO = Path(__file__).resolve().parent.parent
KEYS = {"name", "title", "section", "source", "command", "date", "commit", "machine", "load", "versions",
        "figures", "compared_with", "details"}


def test_performance_page_is_up_to_date_with_the_results():
    assert report.main(["--check"]) == 0, "docs/performance.md is stale: run python -m bench.report"


@pytest.mark.parametrize("result", harness.load_results(), ids=lambda r: r["name"])
def test_each_result_says_where_it_comes_from_and_what_it_is_compared_with(result):
    assert set(result) == KEYS
    assert result["section"] in harness.SECTIONS
    assert result["source"] == "measured" or result["source"].startswith("recorded ")
    figures = {f["name"] for f in result["figures"]}
    assert all(c["figure"] in figures and c["kind"] in harness.KINDS for c in result["compared_with"])
    if result["section"] == "accuracy":  # never an accuracy without its baseline
        baselined = {c["figure"] for c in result["compared_with"] if c["kind"] == "baseline"}
        assert baselined == figures


def test_the_harness_records_the_machine_the_load_and_the_versions(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["/somewhere/bench/example.py", "--samples", "3"])
    run = harness.Run("example", "An example", "throughput")
    figure = harness.Figure("rate", 10.0, "samples/s")
    path = tmp_path / "example.json"
    run.write(path, [figure], [harness.Comparison("rate", "original", "peer", 5.0, "samples/s")], details={"n": 3})
    result = json.loads(path.read_text())
    assert set(result) == KEYS and result["source"] == "measured"
    assert result["command"] == "python -m bench.example --samples 3"
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert len(result["load"]["start"]) == len(result["load"]["end"]) == 3
    assert result["versions"]["python"] and "numpy" in result["versions"]
    page = report.render([result])
    assert "| rate | **10.00 samples/s** | original 5.00 samples/s (2.00x) |" in page


def test_a_comparison_must_name_a_measured_figure():
    run = harness.Run("example", "An example", "accuracy")
    with pytest.raises(ValueError, match="not measured"):
        run.record([harness.Figure("network", 1.5, "ms")], [harness.Comparison("ridge?", "ridge", "baseline", 1.6, "ms")])


def test_benchmarks_are_modules_that_neither_edit_sys_path_nor_import_tests():
    for path in sorted((REPO / "bench").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("tests"), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("tests") for a in node.names), path
            if isinstance(node, ast.Attribute) and node.attr == "path":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), f"{path}: sys.path"
