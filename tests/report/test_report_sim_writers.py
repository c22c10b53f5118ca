"""SimWriters, the pipeline's TensorBoard object: resume purge, per-setting projector and hparams."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rectest.report.summary import summarize
from rectest.report.tensorboard import SimWriters


def load(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_resume_purges_the_steps_after_the_checkpoint(known, tmp_path):
    frame = known.frame
    by_step = {t: rows for t, rows in frame.groupby("step", sort=True)}
    with SimWriters(tmp_path / "tb", ["k"]) as writers:  # first run: logs steps 0, 5, 10, then dies
        for t in (0, 5, 10):
            rows = by_step[t].copy()
            if t == 10:
                rows["CD"] = -99.0  # logged after its last checkpoint (taken at t = 10, before step 10 ran)
            writers.scalars(rows)
    # resumed from the checkpoint at t = 10: steps 0..9 were done, step 10 runs (and is logged) again
    with SimWriters(tmp_path / "tb", ["k"], purge_step=10) as writers:
        for t in (10, 15):
            writers.scalars(by_step[t])
    events = load(tmp_path / "tb" / "k=1").Scalars("sim/CD")
    assert [e.step for e in events] == list(known.steps)  # every step once: 10 not duplicated
    expected = [(known.value("CD", t, 0) + known.value("CD", t, 1)) / 2 for t in known.steps]
    assert [e.value for e in events] == pytest.approx(expected)


def test_projector_per_setting_after_scalars_and_start_before(known, tmp_path):
    R, m, n, d = 5, 6, 4, 3
    users = torch.arange(R * m * d, dtype=torch.float32).reshape(R, m, d)
    creators = -torch.arange(R * n * d, dtype=torch.float32).reshape(R, n, d)
    start = SimpleNamespace(user_ids=[f"u{j}" for j in range(m)], creator_ids=[100 + i for i in range(n)])
    with SimWriters(tmp_path / "tb", ["k"]) as writers:
        assert writers.projector(users, creators, 0, start) == 1
        writers.scalars(known.frame)
        assert writers.projector(users, creators, 15, start) == 3
    root_config = (tmp_path / "tb" / "summary" / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "start:00000"' in root_config
    for run, replica in (("k=1", 0), ("k=none", 2), ("k=10", 4)):
        config = (tmp_path / "tb" / run / "projector_config.pbtxt").read_text()
        paths = dict(re.findall(r'(metadata_path|tensor_path): "([^"]+)"', config))
        rows = (tmp_path / "tb" / run / paths["tensor_path"]).read_text().splitlines()
        assert [float(x) for x in rows[0].split("\t")] == users[replica, 0].tolist()
        assert [float(x) for x in rows[m].split("\t")] == creators[replica, 0].tolist()
        meta = (tmp_path / "tb" / run / paths["metadata_path"]).read_text().splitlines()
        assert meta[1].split("\t") == ["user", "0", "u0"] and meta[-1].split("\t") == ["creator", "3", "103"]


def test_hparams_per_setting_and_figure_in_the_summary_run(known, tmp_path):
    summary = summarize(known.frame, ["k"])
    with SimWriters(tmp_path / "tb", ["k"]) as writers:
        writers.scalars(known.frame)
        writers.hparams(summary)
        from rectest.report.figures import measures_figure

        writers.figure(measures_figure(known.frame, ["k"], "t"))
    for group in summary["groups"]:
        acc = load(tmp_path / "tb" / group["label"].replace(", ", ","))
        assert acc.PluginTagToContent("hparams")
        # the HParams table shows the last sim/TP value: the final mean over seeds
        assert acc.Scalars("sim/TP")[-1].value == pytest.approx(group["final"]["TP"]["mean"])
        assert not any(tag.startswith("final/") for tag in acc.Tags()["scalars"])
    assert load(tmp_path / "tb" / "summary").Tags()["images"] == ["figures/measures"]
    assert not list((tmp_path / "tb").glob("events.*")), "nothing in a run named '.'"
