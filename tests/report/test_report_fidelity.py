"""The fidelity table: a finished top-k run beside the paper's Table 4, with the measured reasons."""

from __future__ import annotations

import json

from rectest.report.fidelity import EXTRA_PAPER, PAPER_T0, main, paper_cell, tp_drift
from rectest.report.metrics_log import read_metrics
from tests.conftest import compose_config
from tests.conftest import run_config as run


def test_paper_cells():
    assert paper_cell(1, 2000) == {"CD": 1.40, "TP": 0.20}
    assert paper_cell(2000, 2000) == paper_cell(1682, 1682) == {"CD": 1.00, "TP": 1.00}  # k = n
    assert paper_cell(10, 2000) == EXTRA_PAPER[10] and paper_cell(7, 2000) is None


def test_fidelity_table_of_a_run(tmp_path, capsys):
    overrides = [
        "+experiment=topk", "policy.k=[1,10,n]", "sim.steps=120", "sim.log_every=10", "sim.seeds=[0,1]",
        "logger=none", "trainer.max_epochs=1",
    ]  # fmt: skip
    folder = run(compose_config(overrides), tmp_path / "run")
    assert main([str(folder)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")][1:]  # after the header
    assert rows[0].startswith("| t = 0, k = n") and f"{PAPER_T0['RR']:.3f}" in rows[0]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["1", "10", "n"]
    summary = json.loads((folder / "summary.json").read_text())
    frame = read_metrics(folder / "metrics.csv", ["k"])
    drift = tp_drift(frame, 1)  # TP at step 119 minus TP at step 10 (the last logged step <= 19)
    at = frame[frame["k"] == 1].groupby("step")["TP"].mean()
    assert drift is not None and abs(drift - (at[119] - at[10])) < 1e-9
    assert f"{summary['groups'][0]['final']['CD']['mean']:.3f}" in rows[1]


def test_fidelity_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("rectest: error:")
