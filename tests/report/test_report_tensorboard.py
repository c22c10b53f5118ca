"""TensorBoard: sim/ scalars read back with TensorBoard's own reader; hparams, projector, images."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from rectest.report.figures import measures_figure, plot_measures
from rectest.report.tensorboard import (
    SIM_PREFIX,
    SimScalarLogger,
    add_embedding,
    log_figure,
    log_hparams,
    log_projector,
    run_name,
)
from rectest.report.values import MEASURES


def load(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_sim_scalars_one_run_per_setting_with_the_seed_mean(known, tmp_path):
    with SimScalarLogger(tmp_path / "tb", ["k"]) as logger:
        logger.log(known.frame)
    runs = sorted(p for p in (tmp_path / "tb").iterdir())
    assert [p.name for p in runs] == ["k=1", "k=10", "k=none"]
    replicas = {"k=1": (0, 1), "k=none": (2, 3), "k=10": (4,)}
    for run in runs:
        acc = load(run)
        assert set(acc.Tags()["scalars"]) == {f"sim/{m}" for m in MEASURES}
        for m in MEASURES:
            events = acc.Scalars(SIM_PREFIX + m)
            assert [e.step for e in events] == list(known.steps)
            reps = replicas[run.name]
            expected = [sum(known.value(m, t, r) for r in reps) / len(reps) for t in known.steps]
            assert [e.value for e in events] == pytest.approx(expected, abs=1e-6)


def test_streaming_step_by_step_equals_the_whole_frame(known, tmp_path):
    with SimScalarLogger(tmp_path / "tb", ["k"]) as logger:
        for _, rows in known.frame.groupby("step", sort=True):
            logger.log(rows)
    acc = load(tmp_path / "tb" / "k=none")
    values = [e.value for e in acc.Scalars("sim/RR")]
    assert values == pytest.approx(
        [(known.value("RR", t, 2) + known.value("RR", t, 3)) / 2 for t in known.steps]
    )


def test_run_names():
    assert run_name({"k": None}) == "k=none"
    assert run_name({"policy.k": 5, "policy.beta": float("inf")}) == "policy.k=5,policy.beta=inf"
    assert run_name({}) == "all"
    assert "/" not in run_name({"data.path": "a/b c"})


def test_hparams_land_in_the_writers_run_without_one_point_series(tmp_path):
    with SummaryWriter(log_dir=str(tmp_path / "run")) as writer:
        for step, value in ((0, 1.4), (10, 1.25)):
            writer.add_scalar("sim/CD", value, step)
        log_hparams(writer, {"policy": {"k": None, "beta": 1.0}, "sim": {"seeds": [0, 1]}}, ["sim/CD"])
    assert [p.name for p in (tmp_path / "run").iterdir() if p.is_dir()] == []  # no time-stamped sub-run
    acc = load(tmp_path / "run")
    assert acc.Tags()["scalars"] == ["sim/CD"]  # no final/* one-point series
    content = acc.PluginTagToContent("hparams")
    assert content, "no hparams summary written"
    blob = b"".join(content.values())
    for name in (b"policy.k", b"policy.beta", b"sim.seeds", b"sim/CD"):
        assert name in blob


def test_add_embedding_writes_the_files_of_torchs_writer(tmp_path):
    """The fast writer's snapshots, two steps and tags needing escapes in one run, are the files
    SummaryWriter.add_embedding writes, byte for byte (vectors, labels and the projector's config)."""
    gen = torch.Generator().manual_seed(3)
    points = [torch.randn(50, 7, generator=gen) * 10.0 ** torch.randint(-8, 8, (50, 7), generator=gen)]
    points.append(torch.tensor([[0.1, -0.0, 1e-30, 3.4e38, 1.0, 2.5, -7.25]]))
    header = ["kind", "index", "id"]
    for name in ("ours", "torch"):
        with SummaryWriter(log_dir=str(tmp_path / name)) as writer:
            for step, (tag, mat) in enumerate(zip(["state/k=1", "a%b\\c"], points, strict=True)):
                meta = [["user", str(i), f"id {i}"] for i in range(mat.shape[0])]
                if name == "ours":
                    add_embedding(writer, mat, meta, step * 10, tag, header)
                else:
                    writer.add_embedding(
                        mat, metadata=meta, global_step=step * 10, tag=tag, metadata_header=header
                    )
    ours = sorted(p.relative_to(tmp_path / "ours") for p in (tmp_path / "ours").rglob("*.*sv"))
    assert len(ours) == 4
    assert ours == sorted(p.relative_to(tmp_path / "torch") for p in (tmp_path / "torch").rglob("*.*sv"))
    for rel in [*ours, Path("projector_config.pbtxt")]:
        assert (tmp_path / "ours" / rel).read_bytes() == (tmp_path / "torch" / rel).read_bytes(), rel


def test_projector_snapshot_subsamples_users_and_labels_kinds(tmp_path):
    users, creators = torch.randn(2500, 4), torch.randn(30, 4)
    with SummaryWriter(log_dir=str(tmp_path / "run")) as writer:
        count = log_projector(writer, users, creators, step=7, tag="state")
    assert count == 2000 + 30
    config = (tmp_path / "run" / "projector_config.pbtxt").read_text()
    paths = dict(re.findall(r'(metadata_path|tensor_path): "([^"]+)"', config))
    assert 'tensor_name: "state:00007"' in config
    with open(tmp_path / "run" / paths["metadata_path"], encoding="utf-8") as f:
        meta = list(csv.reader(f, delimiter="\t"))
    assert meta[0] == ["kind", "index", "id"] and len(meta) == 1 + count
    assert sum(row[0] == "user" for row in meta[1:]) == 2000
    assert [row[1] for row in meta[-30:]] == [str(i) for i in range(30)]
    vectors = (tmp_path / "run" / paths["tensor_path"]).read_text().splitlines()
    assert len(vectors) == count
    first_creator = [float(x) for x in vectors[2000].split("\t")]
    assert first_creator == pytest.approx(creators[0].tolist(), abs=1e-5)


def test_figures_as_images(known, tmp_path):
    png = plot_measures(known.frame, ["k"], tmp_path / "m.png", "t")
    with SummaryWriter(log_dir=str(tmp_path / "run")) as writer:
        log_figure(writer, "figures/from_png", png)
        log_figure(writer, "figures/from_fig", measures_figure(known.frame, ["k"], "t"), step=3)
    acc = load(tmp_path / "run")
    assert set(acc.Tags()["images"]) == {"figures/from_png", "figures/from_fig"}
    (image,) = acc.Images("figures/from_png")
    assert image.width > 300 and image.height > 200 and image.encoded_image_string[:4] == b"\x89PNG"
    assert acc.Images("figures/from_fig")[0].step == 3
