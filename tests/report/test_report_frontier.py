"""The diversity frontier: one row per setting, the Pareto front of final CD against mean RR."""

from __future__ import annotations

import pytest

from rectest.errors import DataError
from rectest.report.frontier import frontier_markdown, frontier_rows, main


def _group(family: str, value: float, rr: float, cd: float) -> dict:
    stat = lambda x: {"mean": x, "stderr": 0.01}  # noqa: E731
    return {
        "params": {"family": family, "beta": value, "k": 5},
        "n_seeds": 2,
        "final": {"CD": stat(cd), "TP": stat(0.5)},
        "time_avg": {"RR": stat(rr), "RD": stat(1 - rr)},
    }


def test_the_front_holds_exactly_the_settings_no_other_beats_on_both_axes():
    groups = [
        _group("a", 1, rr=0.9, cd=1.30),  # front: the most relevant
        _group("a", 2, rr=0.5, cd=1.35),  # front: the most diverse
        _group("b", 3, rr=0.6, cd=1.32),  # front: nothing has both more RR and more CD
        _group("b", 4, rr=0.5, cd=1.31),  # beaten by beta=2 (same RR, higher CD)
        _group("b", 5, rr=0.4, cd=1.20),  # beaten by every other
    ]
    rows = frontier_rows({"groups": groups})
    assert [r["relevance_front"] for r in rows] == [True, True, True, False, False]
    # RD = 1 - RR here: the diversity front of CD against RD keeps the most diverse and the best CD
    assert [r["diversity_front"] for r in rows] == [False, True, False, False, True]
    assert [r["family"] for r in rows] == ["a", "a", "b", "b", "b"]
    assert rows[0]["label"] == "beta=1"  # k is the same everywhere: not part of the label
    text = frontier_markdown(rows, "t")
    assert text.count(" | R |") == 2 and text.count(" | R D |") == 1 and text.count(" | D |") == 1


def test_a_run_folder_without_a_summary_is_one_clear_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "summary.json" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(DataError, match="no settings"):
        frontier_rows({"groups": []})
