"""The benchmark harness: a smoke run on tiny counts, so that ``make bench`` cannot rot.

No figure is timed here; the smoke run checks that every case runs, reports sane
numbers, and that the key-fetch counts of case 8 are exact.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from bench.__main__ import main
from bench._context import QUICK
from bench._measure import Subject, best_rates, percentile
from bench._report import Row
from bench.profile import main as profile_main

CASES = {"1", "2", "3", "4", "5a", "5b", "5c", "5d"}
CASES |= {f"6{c}" for c in "abcdefghi"} | {"7a", "7b", "7c"} | {f"8{c}" for c in "abcde"}
CASES |= {"9a", "9b", "9c"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    main(["--quick", "--out", str(out)])
    document = json.loads((out / "latest.json").read_text())
    return document, (out / "latest.md").read_text()


def _rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["case"]: row for row in document["rows"]}


def test_every_case_reports_a_finite_figure_and_ratio(smoke: tuple[dict[str, Any], str]) -> None:
    rows = _rows(smoke[0])
    assert set(rows) == CASES
    for case, row in rows.items():
        assert math.isfinite(row["value"]), case
        assert row["verdict"] in {"PASS", "FAIL", "info", "ref"}, case
        if row["reference_value"] is not None:
            assert row["ratio"] == pytest.approx(row["value"] / row["reference_value"]), case
    for case in ("1", "2", "3", "4", "5a", "5b", "6a", "6b", "6d", "6e", "6i", "7a", "7b"):
        assert rows[case]["value"] > 0, case
    assert rows["7b"]["extra"]["p99_ms"] >= rows["7b"]["extra"]["p50_ms"] > 0


def test_key_fetch_counts_are_exact(smoke: tuple[dict[str, Any], str]) -> None:
    rows = _rows(smoke[0])
    assert (rows["8a"]["value"], rows["8b"]["value"]) == (1, 1)
    assert rows["8c"]["value"] == QUICK.flood_windows
    assert rows["8c"]["verdict"] == "PASS"
    assert 0 <= rows["8d"]["value"] <= rows["8d"]["reference_value"]


def test_memory_per_entry_is_plausible(smoke: tuple[dict[str, Any], str]) -> None:
    rows = _rows(smoke[0])
    per_entry = rows["9a"]["extra"]["bytes_per_entry"]
    assert 500 < per_entry < 64 * 1024  # a few KB: identity + claims + digest
    assert rows["9c"]["extra"]["entries"] == QUICK.memory_sizes[1]


def test_markdown_has_the_table_and_the_machine(smoke: tuple[dict[str, Any], str]) -> None:
    document, markdown = smoke
    for case in CASES:
        assert f"\n| {case} | " in markdown
    assert "Machine:" in markdown
    assert {"CPU", "cores", "Python", "OpenSSL (cryptography)"} <= document["machine"].keys()


@pytest.mark.parametrize(
    ("bound", "target", "verdict"),
    [(">=", 0.5, "PASS"), (">=", 0.6, "FAIL"), ("<=", 0.5, "PASS"), ("==", 0.4, "FAIL")],
)
def test_row_verdict_bounds_the_ratio(bound: Any, target: float, verdict: str) -> None:
    row = Row("x", "x", 50.0, "ops/s", "ref", 100.0, bound, target)
    assert row.ratio == 0.5
    assert row.verdict == verdict
    assert Row("x", "x", 1.0, "ops/s").verdict == "ref"
    assert Row("x", "x", 1.0, "ops/s", "ref", 2.0).verdict == "info"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


@pytest.mark.anyio
async def test_rounds_interleave_and_set_up_every_round() -> None:
    calls: list[str] = []

    def subject(name: str) -> Subject:
        return Subject(name, lambda: calls.append(name), 10, setup=lambda: calls.append("setup"))

    async def async_batch() -> None:
        calls.append("async")

    rates = await best_rates([subject("a"), subject("b"), Subject("c", async_batch, 1)], 2)
    assert calls == ["setup", "a", "setup", "b", "async", "async", "setup", "b", "setup", "a"]
    assert set(rates) == {"a", "b", "c"}
    assert all(rate > 0 for rate in rates.values())


def test_profile_report_runs_on_tiny_counts(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    profile_main(["--tokens", "4", "--repeat", "40", "--top", "3", "--out", str(tmp_path)])
    report = (tmp_path / "profile-cprofile.md").read_text()
    assert report == capsys.readouterr().out
    for title in ("validate, unique tokens", "validate, repeated token", "RSA operation"):
        assert title in report
    table = report[report.index("| Measure | µs |") :].splitlines()[2:6]
    figures = [float(line.split("|")[2]) for line in table]
    assert len(figures) == 4 and all(math.isfinite(f) for f in figures)
    assert all(f > 0 for f in figures[:3])  # alone, validate, validate without RSA
    assert figures[3] == pytest.approx(figures[1] - figures[2], abs=0.11)  # rounding
    steps = report[report.index("| Step | alone | inside `validate` |") :].splitlines()[2:14]
    cells = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in steps}
    assert len(cells) == 12 and "RS256 check (RSA operation + SHA-256 + compare)" in cells
    alone = [float(a) for a, _ in list(cells.values())[:8]]
    inside = [float(i.rstrip(" |")) for _, i in list(cells.values())[:8]]
    assert all(math.isfinite(f) and f >= 0 for f in alone) and max(alone) > 0
    assert float(cells["all the steps"][0]) == pytest.approx(sum(alone), abs=0.5)
    assert float(cells["all the steps"][1].rstrip(" |")) == pytest.approx(sum(inside), abs=0.5)
    total = float(cells["`validate`, unique tokens"][1].rstrip(" |"))
    rest = float(cells["the rest: the validator's own code"][1].rstrip(" |"))
    assert total > 0 and rest == pytest.approx(total - sum(inside), abs=0.5)
