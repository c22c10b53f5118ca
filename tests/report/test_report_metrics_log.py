"""metrics.csv: rows durable as written, resume drops exactly the rows after the checkpoint."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from rectest.errors import DataError
from rectest.report.metrics_log import MetricsLog, read_metrics

COLUMNS = ["step", "replica", "seed", "k", "CD", "TP"]


def rows_of_step(step: int) -> list[dict]:
    """Two replicas per step; awkward floats so a lossy format would show."""
    return [
        {
            "step": step,
            "replica": r,
            "seed": r,
            "k": [None, math.inf][r],
            "CD": 1 / 3 + step,
            "TP": math.pi * r,
        }
        for r in range(2)
    ]


def write_steps(path: Path, steps: range) -> None:
    with MetricsLog(path, COLUMNS) as log:
        for t in steps:
            log.append(rows_of_step(t))


def count_lines_in_other_process(path: Path) -> int:
    code = "import sys; print(sum(1 for _ in open(sys.argv[1], encoding='utf-8')))"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_rows_are_visible_to_another_process_before_close(tmp_path):
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path, COLUMNS)
    try:
        assert count_lines_in_other_process(path) == 1  # the header
        log.append(rows_of_step(0))
        assert count_lines_in_other_process(path) == 3
        log.append(rows_of_step(1))
        assert count_lines_in_other_process(path) == 5
    finally:
        log.close()


def test_values_round_trip_exactly(tmp_path):
    path = tmp_path / "metrics.csv"
    write_steps(path, range(3))
    frame = read_metrics(path, ["k"])
    assert len(frame) == 6
    expected = [row for t in range(3) for row in rows_of_step(t)]
    assert frame["CD"].tolist() == [row["CD"] for row in expected]  # bit-exact floats
    assert frame["TP"].tolist() == [row["TP"] for row in expected]
    assert frame["k"].tolist() == [None, math.inf] * 3


def test_resume_drops_exactly_the_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    write_steps(path, range(8))  # crashed after logging step 7, last checkpoint at step 5
    before = path.read_text().splitlines(keepends=True)
    log = MetricsLog.open_for_resume(path, last_step=5)
    log.close()
    after = path.read_text().splitlines(keepends=True)
    assert after == before[: 1 + 2 * 6]  # header + steps 0..5, byte for byte
    assert read_metrics(path)["step"].tolist() == [t for t in range(6) for _ in range(2)]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temp file left behind


def test_killed_and_resumed_log_equals_the_uninterrupted_one(tmp_path):
    straight, resumed = tmp_path / "a.csv", tmp_path / "b.csv"
    write_steps(straight, range(10))
    write_steps(resumed, range(8))
    with open(resumed, "a", encoding="utf-8") as f:
        f.write("8,0,0,,8.33")  # a row torn by the kill
    with MetricsLog.open_for_resume(resumed, last_step=5, columns=COLUMNS) as log:
        for t in range(6, 10):  # the run replays the steps after its checkpoint
            log.append(rows_of_step(t))
    assert resumed.read_bytes() == straight.read_bytes()


def test_resume_with_nothing_to_drop_keeps_the_file(tmp_path):
    path = tmp_path / "metrics.csv"
    write_steps(path, range(3))
    before = path.read_bytes()
    MetricsLog.open_for_resume(path, last_step=2).close()
    assert path.read_bytes() == before


def test_resume_refuses_missing_file_wrong_header_and_malformed_rows(tmp_path):
    with pytest.raises(DataError, match="missing"):
        MetricsLog.open_for_resume(tmp_path / "none.csv", last_step=0)
    path = tmp_path / "metrics.csv"
    write_steps(path, range(2))
    with pytest.raises(DataError, match="header"):
        MetricsLog.open_for_resume(path, last_step=0, columns=["step", "CD"])
    with open(path, "a", encoding="utf-8") as f:
        f.write("x,1\n")
    with pytest.raises(DataError, match="line 6"):
        MetricsLog.open_for_resume(path, last_step=1)


def test_a_fresh_log_replaces_an_old_file(tmp_path):
    path = tmp_path / "metrics.csv"
    write_steps(path, range(4))
    MetricsLog(path, COLUMNS).close()
    assert path.read_text() == ",".join(COLUMNS) + "\n"


def test_append_frame_writes_the_log_columns_in_order(known, tmp_path):
    path = tmp_path / "metrics.csv"
    columns = list(known.frame.columns)
    with MetricsLog(path, columns) as log:
        assert log.append_frame(known.frame) == len(known.frame)
    back = read_metrics(path, ["k"])
    assert list(back.columns) == columns
    assert back["CD"].tolist() == known.frame["CD"].tolist()
    assert back["k"].tolist() == known.frame["k"].tolist()
