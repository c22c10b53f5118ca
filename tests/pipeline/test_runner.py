"""The whole testbed end to end, in tiny configurations: every experiment runs and writes its outputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rectest.data.interactions import Interactions
from rectest.errors import ConfigError
from rectest.pipeline.start import choose_creators as _choose_creators
from rectest.sim.geometry import iid_abs_cosine
from tests.conftest import CONF, REPO, compose_config
from tests.conftest import run_config as run

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
QUIET = ["logger.progress=false", "trainer.enable_progress_bar=false", "trainer.max_epochs=2"]


def tiny(experiment: str, *extra: str) -> list[str]:
    return [
        f"+experiment={experiment}",
        "sim.steps=6",
        "sim.log_every=1",
        "sim.seeds=[0,1]",
        "sim.checkpoint_every=0",
        *QUIET,
        *extra,
    ]


def _parse_table(path: Path) -> dict[tuple[str, ...], dict[str, float]]:
    """table.md -> {the cells before CD: {measure: mean}} for the CD..TP columns."""
    text = path.read_text().split("\n\n## ")[0]  # the results table, before the geometry sections
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[tuple(cells[: header.index("CD")])] = {
            m: float(re.split(r" ± ", cells[header.index(m)])[0]) for m in ("CD", "RD", "RR", "TP")
        }
    return out


MOVIELENS_ONLY = {"topk_movielens"}  # its k grid (up to 1000) needs a MovieLens-sized creator set


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_tiny(experiment, tmp_path, request):
    extra = ["logger.tensorboard=false", "logger.projector=false"]
    if experiment in MOVIELENS_ONLY:
        root = request.getfixturevalue("shared_movielens")
        extra += [
            "data=ml-100k",
            f"data.path={root}",
            "data.download=false",
            "sim.n_users=50",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=5",
            "sim.n_creators=1200",
            "sim.threads=1",
        ]
    cfg = compose_config(tiny(experiment, *extra))
    folder = run(cfg, tmp_path / "run")
    summary = json.loads((folder / "summary.json").read_text())
    metrics = pd.read_csv(folder / "metrics.csv")
    replicas = metrics["replica"].nunique()
    assert len(metrics) == 6 * replicas  # log_every=1: one row per step and replica
    assert metrics[["CD", "RD", "RR", "TP"]].notna().all().all()
    assert (metrics["TP"] <= 1 + 1e-6).all() and (metrics["RD"] >= -1e-6).all()
    figures = list((folder / "figures").glob("*.png"))
    assert figures and all(p.stat().st_size > 5000 for p in figures)
    # table.md agrees with summary.json
    table = _parse_table(folder / "table.md")
    assert len(table) == len(summary["groups"])
    for group, row in zip(summary["groups"], table.values(), strict=True):
        for measure in ("CD", "RD", "RR", "TP"):
            assert row[measure] == pytest.approx(group["final"][measure]["mean"], abs=6e-4)
    trained = cfg.sim.init != "truth"  # (the convergence design starts from the world's own vectors)
    assert (folder / "embeddings" / "users.npz").exists() == trained
    if experiment == "frontier":  # several policy families: the frontier, one row per setting
        rows = [ln for ln in (folder / "frontier.md").read_text().splitlines() if ln.startswith("| ")][1:]
        assert len(rows) == len(summary["groups"]) and (folder / "figures" / "frontier.png").exists()
    if experiment == "convergence":  # one grid per variable: per value, how many seeds polarized
        text = (folder / "convergence.md").read_text()
        assert all(f"\n| {var} | " in text for var in ("eta_u", "eta_c", "beta"))
        assert len(summary["polarized_at"]) == replicas and (folder / "figures" / "convergence.png").exists()


def test_tensorboard_has_sim_scalars_per_swept_value(tmp_path):
    folder = run(compose_config(tiny("topk")), tmp_path / "run")
    runs = sorted(p for p in (folder / "tb").iterdir() if p.is_dir() and p.name.startswith("k="))
    assert [p.name for p in runs] == ["k=1", "k=10", "k=5", "k=50"]
    metrics = pd.read_csv(folder / "metrics.csv")
    for run_dir in runs:
        acc = EventAccumulator(str(run_dir))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        assert {"sim/CD", "sim/RD", "sim/RR", "sim/TP"} <= set(tags)
        k = int(run_dir.name.split("=")[1])
        events = acc.Scalars("sim/TP")
        assert [e.step for e in events] == list(range(6))
        expected = metrics[metrics["k"] == k].groupby("step")["TP"].mean()
        assert [e.value for e in events] == pytest.approx(list(expected), abs=1e-6)


def test_a_finished_run_is_never_overwritten(tmp_path):
    cfg = compose_config(tiny("beta", "logger=none"))
    folder = run(cfg, tmp_path / "run")
    before = (folder / "metrics.csv").read_bytes()
    with pytest.raises(ConfigError, match="finished run"):
        run(cfg, tmp_path / "run")
    other = compose_config(tiny("beta", "logger=none", "policy.beta=[0,2]"))
    with pytest.raises(ConfigError, match="different configuration"):
        run(other, tmp_path / "run")
    assert (folder / "metrics.csv").read_bytes() == before


def test_bad_values_are_refused_before_any_work(tmp_path):
    for override, message in [
        ("policy.beta=-1", "policy.beta=-1.0: expected a value in [0.0, inf]"),
        ("policy.k=0", "policy.k=0: expected an integer >= 1"),
        ("policy.k=[5,60]", "policy.k=60: expected k <= n = 50 creators"),
        ("policy.tau=1.5", "policy.tau=1.5"),
        ("policy.eps=2", "policy.eps=2.0"),
        ("policy.k=abc", "policy.k='abc': expected a whole number or 'n'"),
        ("dynamics.eta_u=-0.1", "dynamics.eta_u=-0.1: expected a value in [0.0, 1.0]"),
        ("dynamics.eta_c=1.5", "dynamics.eta_c=1.5"),
        ("dynamics.fixed_dims=64", "dynamics.fixed_dims=64: expected fewer than d = 64 dimensions"),
        ("sim.seeds=[0,3,0]", "sim.seeds=[0, 3, 0]: seed(s) [0] repeated"),
        ("sim.steps=-1", "sim.steps=-1: expected a whole number >= 0"),
        ("model.dim=0", "model.dim=0: expected a whole number >= 1"),
        ("model.feedback=both", "model.feedback='both': expected one of explicit, implicit"),
        ("sim.objective=XX", "sim.objective='XX': expected one of CD"),
        ("sim.shards=2", "sim.shards=2: a sharded run starts from vectors every process can read"),
        ("sim.init=truth", None),  # valid on synthetic data: must not raise here
    ]:
        cfg = compose_config(["logger=none", "sim.steps=1", "sim.seeds=[0]", *QUIET, override])
        if message is None:
            continue
        with pytest.raises(ConfigError, match=re.escape(message)):
            run(cfg, tmp_path / "bad")
        assert not (tmp_path / "bad").exists(), f"{override} left a run folder behind"


def test_unknown_choices_are_refused_when_the_config_is_composed():
    from rectest.train import check_overrides

    for override, choices in [
        ("dynamics.g=cube", "[sign, identity, tanh]"),
        ("sim.transform=rotate", "[none, center, whiten, whiten_each]"),
        ("sim.creators=best", "[most_rated, random, all]"),
        ("sim.device=gpu", "[auto, cpu, cuda]"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"{override}: Invalid value")) as caught:
            check_overrides([override])
        assert caught.value.args[0].endswith(f"expected one of {choices}")


def test_init_truth_starts_from_the_synthetic_world(tmp_path):
    folder = run(compose_config(tiny("topk", "logger=none", "sim.init=truth")), tmp_path / "run")
    metrics = pd.read_csv(folder / "metrics.csv")
    first = metrics[metrics["step"] == 0]
    # i.i.d. uniform world, d=10, n=50: CD(0) ~ 1.395 and TP(0) ~ 0.2735 (spec section 6), one world for all replicas
    assert first["CD"].nunique() == 1 and first["CD"].iloc[0] == pytest.approx(1.395, abs=0.05)
    assert first["TP"].iloc[0] == pytest.approx(0.2735, abs=0.05)


def test_bring_your_own_embeddings(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "emb.npz"
    np.savez(path, users=rng.normal(size=(30, 4)), creators=rng.normal(size=(12, 4)))
    cfg = compose_config(
        ["data=embeddings", f"data.path={path}", "logger=none", "sim.steps=4", "sim.seeds=[0]", *QUIET]
    )
    folder = run(cfg, tmp_path / "run")
    metrics = pd.read_csv(folder / "metrics.csv")
    assert len(metrics) == 4 and not (folder / "embeddings").exists()


def test_learned_recommender_logs_its_error_at_each_retrain(tmp_path):
    overrides = tiny(
        "retraining", "sim.retrain_every=[0,2]", "logger.projector=false", "logger.figures=false"
    )
    folder = run(compose_config(overrides), tmp_path / "run")
    log = pd.read_csv(folder / "retrain.csv")
    assert sorted(log["step"].unique()) == [2, 4, 6]  # every 2 steps of 6
    assert (log["rmse"] >= 0).all()
    # retraining moves the platform's model away from the never-retrained one (same world, same seeds)
    last = log[log["step"] == 6].groupby("retrain_every")["rmse"].mean()
    assert abs(last[2] - last[0]) > 1e-4
    acc = EventAccumulator(str(folder / "tb" / "retrain_every=2"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("retrain/rmse")] == [2, 4, 6]


def test_every_run_reports_its_starting_geometry_and_final_poles(tmp_path):
    overrides = tiny(
        "topk",
        "logger.projector=false",
        "sim.transform=whiten_each",
        "sim.creators=random",
        "sim.n_creators=40",
    )
    folder = run(compose_config(overrides), tmp_path / "run")
    summary = json.loads((folder / "summary.json").read_text())
    geo = summary["geometry"]
    assert (geo["transform"], geo["creators"], geo["n"], geo["m"]) == ("whiten_each", "random", 40, 100)
    assert set(geo["start"]) == set(geo["iid"])
    assert geo["d"] == 64 and geo["iid"]["TP"] == pytest.approx(iid_abs_cosine(64) * (1 - 1 / 40) + 1 / 40)
    assert 0 <= geo["model_top10_kept"] <= 1
    # whitening each cloud leaves no common direction: mean vectors near 0, half the scores negative
    assert geo["start"]["mean_user_norm"] < 0.2 and abs(geo["start"]["negative_scores"] - 0.5) < 0.1
    metrics = pd.read_csv(folder / "metrics.csv")
    first = metrics[metrics["step"] == 0]
    assert [row["params"]["k"] for row in geo["t0"]] == [g["params"]["k"] for g in summary["groups"]]
    for row in geo["t0"]:
        at_k = first[first["k"] == row["params"]["k"]]
        for m in ("CD", "TP", "RR", "RD"):
            assert row["measured"][m] == pytest.approx(at_k[m].mean(), abs=1e-6)
        assert row["iid"]["RD"] >= 0 and -1 <= row["iid"]["RR"] <= 1
    assert geo["start"]["CD"] == pytest.approx(first["CD"].iloc[0], abs=1e-5)
    for rep in summary["replicas"]:
        poles = rep["poles"]
        assert sum(x * x for x in poles["axis"]) == pytest.approx(1.0, abs=1e-5)
        assert 0.5 <= poles["users_plus"] <= 1 and 0 <= poles["creators_plus"] <= 1
        assert set(poles["predicted"]) == {"CD", "TP", "RR", "RD"}
    for group in summary["groups"]:
        assert set(group["poles"]) == {"creators_plus", "users_plus", "radius", "predicted"}
    table = (folder / "table.md").read_text()
    assert "## Geometry of the starting state" in table and "## Poles of the final state" in table
    acc = EventAccumulator(str(folder / "tb" / "summary"))
    acc.Reload()
    assert "geometry/TP" in acc.Tags()["scalars"]
    # every figure reaches the Images tab, the table the Text tab, and nothing sits in a run named '.'
    assert set(acc.Tags()["images"]) == {f"figures/{p.stem}" for p in (folder / "figures").glob("*.png")}
    assert len(acc.Tags()["images"]) == 4 and "table/text_summary" in acc.Tags()["tensors"]
    assert not list((folder / "tb").glob("events.*"))
    assert acc.Scalars("geometry/TP")[0].value == pytest.approx(geo["start"]["TP"], abs=1e-6)


def test_creator_choices(tmp_path):
    counts = np.array([5, 9, 1, 9, 0, 7])
    item = np.repeat(np.arange(6), counts)
    log = Interactions(item * 0, item, np.ones(len(item), np.float32), None, np.arange(1), np.arange(6))
    assert list(_choose_creators("most_rated", log, 6, 3, 0)) == [1, 3, 5]  # ties by index
    assert list(_choose_creators("most_rated", None, 6, 3, 0)) == [0, 1, 2]  # no counts: file order
    assert list(_choose_creators("all", log, 6, 3, 0)) == list(range(6))
    picked = [tuple(_choose_creators("random", log, 6, 3, seed)) for seed in range(20)]
    assert all(len(set(p)) == 3 and list(p) == sorted(p) for p in picked) and len(set(picked)) > 3

    def creators_of(*extra):
        overrides = tiny("topk", "logger=none", "policy.k=[1,5]", *extra)
        folder = run(compose_config(overrides), tmp_path / str(len(list(tmp_path.iterdir()))))
        return json.loads((folder / "summary.json").read_text())["geometry"]["n"]

    assert creators_of("sim.creators=all", "sim.n_creators=10") == 50  # all ignores the count
    everything = run(
        compose_config(
            tiny("topk", "logger=none", "policy.k=[1,n]", "sim.creators=all", "sim.n_creators=10")
        ),
        tmp_path / "every",
    )
    groups = json.loads((everything / "summary.json").read_text())["groups"]
    assert [g["params"]["k"] for g in groups] == [1, 50]  # k = n means all 50 creators, not the count 10
    assert creators_of("sim.creators=random", "sim.n_creators=10") == 10
    assert creators_of("sim.creators=most_rated", "sim.n_creators=12") == 12


def test_simulate_only_from_an_earlier_run_and_truth_without_training(tmp_path):
    trained = run(compose_config(tiny("topk", "logger=none", "sim.steps=0")), tmp_path / "trained")
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["training"] and summary["geometry"]["n"] == 50 and not (trained / "metrics.csv").exists()
    first = run(compose_config(tiny("topk", "logger=none")), tmp_path / "first")
    from_trained = run(
        compose_config(tiny("topk", "logger=none", f"sim.init=run:{trained}")), tmp_path / "ft"
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(first / "metrics.csv"), pd.read_csv(from_trained / "metrics.csv")
    )
    again = run(compose_config(tiny("topk", "logger=none", f"sim.init=run:{first}")), tmp_path / "again")
    assert not (again / "checkpoints").exists() and not (again / "embeddings").exists()  # nothing trained
    a = pd.read_csv(first / "metrics.csv")
    b = pd.read_csv(again / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)  # the same start, the same trajectories
    truth = run(compose_config(tiny("topk", "logger=none", "sim.init=truth")), tmp_path / "truth")
    assert not (truth / "checkpoints").exists() and not (truth / "embeddings").exists()
    with pytest.raises(ConfigError, match="no exported embeddings"):
        run(compose_config(tiny("topk", "logger=none", f"sim.init=run:{tmp_path}")), tmp_path / "bad")
    other_data = tiny("topk", "logger=none", f"sim.init=run:{first}", "data.n_users=80")
    with pytest.raises(ConfigError, match="not this run's data"):
        run(compose_config(other_data), tmp_path / "bad2")


def test_t0_measures_of_a_setting_with_a_null_swept_value(tmp_path):
    overrides = tiny("threshold", "logger=none", "policy.tau=[null,0.5]")
    folder = run(compose_config(overrides), tmp_path / "run")
    t0 = json.loads((folder / "summary.json").read_text())["geometry"]["t0"]
    assert [row["params"]["tau"] for row in t0] == [None, 0.5]
    assert all(row["measured"][m] is not None for row in t0 for m in ("CD", "TP", "RR", "RD"))


@pytest.mark.slow
def test_the_convergence_multirun_is_one_command_that_pools_every_world(tmp_path):
    """`-m +experiment=convergence` runs the centre's grids and one run per other m, n, d, then a Hydra
    callback pools them: the fit table has a row per variable and the per-value table every design point."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable, "-m", "rectest.train", "-m", "+experiment=convergence", "sim.steps=120",
        "sim.seeds=[0,1]", "sim.log_every=60", *QUIET, "logger.tensorboard=false", "logger.projector=false",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(sweep.glob("*/summary.json"))) == 10  # the centre and nine other worlds
    text = (sweep / "convergence.md").read_text()
    fits = [ln.split("|")[1].strip() for ln in text.split("\n\n")[2].splitlines()[2:]]
    assert fits == ["eta_u", "eta_c", "beta", "m", "n", "d"]
    for var, values in {"m": (50, 100, 200, 400), "n": (50, 100, 200, 400), "d": (5, 10, 20, 40)}.items():
        assert all(f"\n| {var} | {v} | " in text for v in values), var
    tb = EventAccumulator(str(next((sweep / "tb").glob("events.*")))).Reload()
    assert tb.Tags()["images"] == ["figures/convergence"]  # the pooled figure in TensorBoard too
