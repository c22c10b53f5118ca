"""table.md agrees with summary.json (parsed back), and the paper's numbers sit next to ours."""

from __future__ import annotations

import math

import pytest

from rectest.report.console import console_summary
from rectest.report.paper import paper_reference
from rectest.report.summary import read_summary, summarize, write_summary
from rectest.report.tables import render_table, write_table
from rectest.report.values import format_value

PAPER = ("CD", "RD", "RR", "TP")


def parse_markdown_table(text: str) -> list[dict[str, str]]:
    """The rows of the first pipe table in ``text`` as {header: cell}."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    assert len(lines) >= 2, "no markdown table found"
    split = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    header, separator, body = split[0], split[1], split[2:]
    assert all(set(c) <= set("-: ") for c in separator)
    assert all(len(row) == len(header) for row in body)
    return [dict(zip(header, row, strict=True)) for row in body]


def parse_mean_stderr(cell: str) -> tuple[float, float | None]:
    if "±" in cell:
        mean, err = cell.split("±")
        return float(mean), float(err)
    return float(cell), None


@pytest.fixture
def written(known, tmp_path):
    write_summary(summarize(known.frame, ["k"]), tmp_path / "summary.json")
    summary = read_summary(tmp_path / "summary.json")  # what a reader of the run folder sees
    paper = [ref for v in (1, None, 10) if (ref := paper_reference("synthetic", "k", v))]
    path = write_table(summary, tmp_path / "table.md", "top-k on synthetic", paper)
    return summary, path.read_text()


def test_table_agrees_with_summary_json(written):
    summary, text = written
    rows = parse_markdown_table(text)
    assert text.startswith("# top-k on synthetic\n")
    assert [r["k"] for r in rows] == [format_value(g["params"]["k"]) for g in summary["groups"]]
    for row, group in zip(rows, summary["groups"], strict=True):
        assert int(row["seeds"]) == group["n_seeds"]
        first = group["polarized"]["first_step"]["mean"]
        expected = f"{group['polarized']['n_polarized']}/{group['n_seeds']}"
        assert row["polarized"] == (expected if first is None else f"{expected} @{first:.0f}")
        for m in PAPER:
            mean, err = parse_mean_stderr(row[m])
            assert mean == pytest.approx(group["final"][m]["mean"], abs=5e-4 + 1e-9)  # 3 decimals, rounded
            if group["final"][m]["stderr"] is None:
                assert err is None
            else:
                assert err == pytest.approx(
                    group["final"][m]["stderr"], abs=5e-4 + 1e-9
                )  # 3 decimals, rounded


def test_paper_columns_hold_the_authors_numbers(written):
    _, text = written
    rows = {r["k"]: r for r in parse_markdown_table(text)}
    # k=1 is the top-1 row; k=none (no truncation) is plain softmax beta=1; k=10 was not reported
    assert [rows["1"][f"paper {m}"] for m in PAPER] == ["1.40", "0.00", "1.00", "0.27"]
    assert [rows["none"][f"paper {m}"] for m in PAPER] == ["1.00", "0.42", "0.76", "1.00"]
    assert [rows["10"][f"paper {m}"] for m in PAPER] == ["-"] * 4


def test_without_paper_rows_there_are_no_paper_columns(known, tmp_path):
    text = write_table(summarize(known.frame, ["k"]), tmp_path / "t.md", "t", None).read_text()
    assert not any(h.startswith("paper") for h in parse_markdown_table(text)[0])


def test_approximate_paper_values_keep_their_tilde(tmp_path):
    summary = {
        "sweep_keys": ["beta"],
        "steps": {"last": 1000},
        "groups": [
            {
                "params": {"beta": 10},
                "n_seeds": 1,
                "final": {m: {"mean": 0.5, "stderr": None} for m in PAPER},
            },
            {
                "params": {"beta": "inf"},
                "n_seeds": 1,
                "final": {m: {"mean": 0.5, "stderr": None} for m in PAPER},
            },
        ],
    }
    paper = [paper_reference("synthetic", "beta", 10), paper_reference("synthetic", "beta", math.inf)]
    rows = parse_markdown_table(write_table(summary, tmp_path / "t.md", "beta", paper).read_text())
    assert [rows[0][f"paper {m}"] for m in PAPER] == ["~1.29", "~0.01", "~0.99", "~0.36"]
    assert rows[1]["beta"] == "inf" and rows[1]["paper TP"] == "0.27"


def test_console_summary_is_aligned_and_agrees(known):
    summary = summarize(known.frame, ["k"])
    text = console_summary(summary, ["k"])
    lines = text.splitlines()
    header, rule, body = lines[1], lines[2], lines[3:]
    assert len(body) == len(summary["groups"])
    # right-aligned columns end where the header's do
    ends = [
        i + 1 for i, ch in enumerate(header) if ch != " " and (i + 1 == len(header) or header[i + 1] == " ")
    ]
    for line in body:
        assert len(line) <= len(rule)
        for end in ends[1:-1]:  # skip the left-aligned key column and the ragged last one
            assert line[end - 1] != " " and (end == len(line) or line[end] == " ")
    for line, group in zip(body, summary["groups"], strict=True):
        assert line.split()[0] == format_value(group["params"]["k"])
        assert f"{group['final']['CD']['mean']:.3f}" in line


def test_table_and_console_accept_a_plain_step_count(known, tmp_path):
    summary = summarize(known.frame, ["k"])
    summary["steps"] = 1000  # a caller may overwrite the steps record with the horizon
    assert "Final values at step 1000" in write_table(summary, tmp_path / "t.md", "t").read_text()
    assert console_summary(summary, ["k"]).startswith("final measures at step 1000")


def test_table_shows_the_first_polarized_step_like_the_console():
    group = {
        "params": {"k": 50},
        "n_seeds": 4,
        "final": {m: {"mean": 0.5, "stderr": 0.01} for m in ("CD", "RD", "RR", "TP")},
        "polarized": {"n_polarized": 3, "fraction": 0.75, "first_step": {"mean": 121.0, "stderr": 2.0}},
    }
    summary = {"sweep_keys": ["k"], "groups": [group], "steps": {"last": 999}}
    text = render_table(summary, "t")
    assert "| 3/4 @121 |" in text


def test_paper_columns_only_beside_a_comparable_run(tmp_path):
    from tests.conftest import compose_config
    from tests.conftest import run_config as run

    base = ["+experiment=topk", "sim.steps=3", "sim.seeds=[0]", "logger=none", "trainer.max_epochs=1"]
    learned = (run(compose_config(base), tmp_path / "a") / "table.md").read_text()
    assert "paper CD" not in learned  # started from learned embeddings: Table 1 is not its setting
    truth = (run(compose_config([*base, "sim.init=truth"]), tmp_path / "b") / "table.md").read_text()
    assert "paper CD" in truth and "i.i.d. uniform world" in truth
