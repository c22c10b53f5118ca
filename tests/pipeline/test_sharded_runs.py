"""``sim.shards``: the main command splits the users over torchrun processes and writes one process's results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, compose_config, run_config

BASE = ["+experiment=topk", "sim.init=truth", "sim.steps=12", "sim.seeds=[0,1]", "sim.log_every=3"]
QUIET = [
    "logger.tensorboard=false",
    "logger.figures=false",
    "logger.projector=false",
    "logger.progress=false",
]
EXACT = ["step", "replica", "seed", "k", "CD", "TP", "UD", "clusters", "polarized"]  # bit for bit
SUMMED = ["RD", "RR"]  # means all-reduced over the ranks: equal to float rounding


def test_a_world_of_one_shard_is_the_single_process_run(tmp_path: Path) -> None:
    one = run_config(compose_config([*BASE, *QUIET, "sim.checkpoint_every=5"]), tmp_path / "one")
    auto = run_config(
        compose_config([*BASE, *QUIET, "sim.checkpoint_every=5", "sim.shards=auto"]), tmp_path / "auto"
    )
    assert (auto / "metrics.csv").read_bytes() == (one / "metrics.csv").read_bytes()


def test_shards_must_match_the_processes(tmp_path: Path) -> None:
    from rectest.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"sim.shards=2: this run has 1 process\(es\); launch it with torchrun"
    ):
        run_config(compose_config([*BASE, *QUIET, "sim.shards=2"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_torchrun_needs_a_run_name(tmp_path: Path) -> None:
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "rectest.train", *BASE, "sim.shards=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**env, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "rectest: error: a run launched by torchrun needs run_name=NAME: every process writes into one run folder"
    )


@pytest.mark.slow
def test_torchrun_with_two_shards_writes_the_single_process_metrics(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip(f"torchrun not found beside {sys.executable}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "rectest.train", *BASE, *QUIET, f"hydra.run.dir={tmp_path / 'one'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    two = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "rectest.train", *BASE, *QUIET,
         "sim.shards=2", f"hydra.run.dir={tmp_path / 'two'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one_metrics = pd.read_csv(tmp_path / "one" / "metrics.csv")
    two_metrics = pd.read_csv(tmp_path / "two" / "metrics.csv")
    assert len(one_metrics) == len(two_metrics) == 5 * 2 * 4  # logged steps 0,3,6,9,11 x 2 seeds x 4 k
    pd.testing.assert_frame_equal(two_metrics[EXACT], one_metrics[EXACT], check_exact=True)
    pd.testing.assert_frame_equal(two_metrics[SUMMED], one_metrics[SUMMED], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "two" / "summary.json").exists() and (tmp_path / "two" / "table.md").exists()
