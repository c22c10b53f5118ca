"""Hydra multirun: one run folder per sweep point, with the basic, joblib and submitit launchers.

The joblib and submitit launchers are optional extras (``rectest[joblib]``, ``rectest[submitit]``); their
tests skip when the plugin is not installed.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONF, REPO

SMALL = [
    "sim.steps=3",
    "sim.seeds=[0]",
    "logger.progress=false",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=2",
]
BETAS = ("0", "1")


def _needs(plugin: str, extra: str) -> None:
    try:
        found = importlib.util.find_spec(f"hydra_plugins.{plugin}") is not None
    except ModuleNotFoundError:  # no Hydra plugin at all: the namespace package hydra_plugins is absent
        found = False
    if not found:
        pytest.skip(f"{plugin} is not installed (optional extra: pip install -e '.[{extra}]')")


def _multirun(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rectest.train", "-m", f"policy.beta={','.join(BETAS)}", *SMALL]
    cmd += [*overrides, f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def _check_sweep(sweep_dir: Path) -> None:
    """One folder per job holding its own config, summary.json and metrics; the override reached the job."""
    rr_at_start = {}
    for num, beta in enumerate(BETAS):
        run = sweep_dir / str(num)
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        assert float(config["policy"]["beta"]) == float(beta)
        assert f"policy.beta={beta}" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        summary = json.loads((run / "summary.json").read_text())
        assert [r["final_step"] for r in summary["replicas"]] == [2]
        with open(run / "metrics.csv", newline="") as f:
            rows = [row for row in csv.DictReader(f) if int(row["step"]) == 0]
        rr_at_start[beta] = float(rows[0]["RR"])
    # both jobs start from the same trained embeddings: at step 0 softmax(1) is more relevant than uniform
    assert abs(rr_at_start["0"]) < 0.1 and rr_at_start["1"] > rr_at_start["0"] + 0.02
    assert not (sweep_dir / str(len(BETAS))).exists()


def test_basic_launcher_writes_one_run_folder_per_job(tmp_path: Path) -> None:
    done = _multirun(tmp_path / "sweep")
    assert done.returncode == 0, done.stderr[-3000:]
    _check_sweep(tmp_path / "sweep")


@pytest.mark.slow
def test_joblib_launcher_runs_the_jobs_in_parallel_processes(tmp_path: Path) -> None:
    _needs("hydra_joblib_launcher", "joblib")
    done = _multirun(tmp_path / "sweep", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    _check_sweep(tmp_path / "sweep")


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_jobs(tmp_path: Path) -> None:
    """The cluster path without a cluster: the submitit plugin with its local executor."""
    _needs("hydra_submitit_launcher", "submitit")
    done = _multirun(tmp_path / "sweep", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "sweep" / ".submitit").is_dir()
    _check_sweep(tmp_path / "sweep")


def test_cluster_launcher_config_selects_submitit_slurm() -> None:
    _needs("hydra_submitit_launcher", "submitit")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["hydra/launcher=cluster", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min > 0
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # task logs beside the runs
