"""write_run_reports: the run folder's summary.json, table.md and figures in one call."""

from __future__ import annotations

import json

from rectest.report.metrics_log import MetricsLog, read_metrics
from rectest.report.run_reports import write_run_reports


def test_run_folder_reports_from_metrics_csv(known, tmp_path):
    with MetricsLog(tmp_path / "metrics.csv", list(known.frame.columns)) as log:
        log.append_frame(known.frame)
    frame = read_metrics(tmp_path / "metrics.csv", ["k"])
    summary = write_run_reports(frame, ["k"], tmp_path, "top-k", setting="synthetic")
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    table = (tmp_path / "table.md").read_text()
    assert "paper CD" in table and "| 1.40 | 0.00 | 1.00 | 0.27 |" in table
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == ["UD.png", "clusters.png", "measures.png", "polarized.png"]


def test_no_paper_columns_for_two_keys_or_no_setting(known, tmp_path):
    frame = known.frame.assign(beta=1.0)
    write_run_reports(frame, ["k", "beta"], tmp_path, "t", setting="synthetic", figures=False)
    assert "paper" not in (tmp_path / "table.md").read_text().split("\n\n")[1]
    write_run_reports(known.frame, ["k"], tmp_path, "t", setting=None, figures=False)
    assert "paper CD" not in (tmp_path / "table.md").read_text()
    assert not (tmp_path / "figures").exists()
