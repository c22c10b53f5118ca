"""A run killed with SIGKILL and started again with the same command ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

ARGS = [
    "+experiment=retraining",  # the learned recommender's state must survive the restart too
    "sim.steps=120",
    "sim.seeds=[0,1]",
    "sim.checkpoint_every=10",
    "sim.retrain_every=[0,7]",
    "sim.churn.window=5",  # creators leave and enter: the churn state must survive too
    "sim.churn.min_share=0.5",
    "sim.churn.entrant=copy",
    "logger.progress=false",
    "logger.figures=false",
    "logger.projector=false",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=2",
]


def _command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "rectest.train", *ARGS, f"hydra.run.dir={run_dir}"]


def _run(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_command(run_dir), cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(tmp_path):
    ref = tmp_path / "ref"
    done = _run(ref)
    assert done.returncode == 0, done.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (
        killed / "checkpoint.pt"
    ).exists():  # wait for a checkpoint, then kill at a random point after it
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"

    again = _run(killed)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (killed / "metrics.csv").read_bytes() == (ref / "metrics.csv").read_bytes()
    # summary.json: identical but for the wall-clock timings of the stages (a resumed run's are its own)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (killed, ref)]
    assert all(s.pop("timings")["simulate_s"] > 0 for s in summaries)
    assert json.dumps(summaries[0], sort_keys=True) == json.dumps(summaries[1], sort_keys=True)
    assert (killed / "retrain.csv").read_text() == (ref / "retrain.csv").read_text()
    assert min(summaries[1]["exits"]) > 0  # churn happened
    assert not (killed / "checkpoint.pt").exists()


class _Evil:
    def __reduce__(self):  # would run a shell command if unpickled with weights_only=False
        return (os.system, ("echo pwned > /tmp/rectest-pwned",))


@pytest.mark.parametrize("content", ["garbage", "truncated", "code", "wrong-shape"])
def test_a_bad_checkpoint_is_refused_clearly(tmp_path, content):
    import torch

    from rectest.errors import ConfigError
    from rectest.pipeline.rundir import RunFolder
    from tests.conftest import compose_config
    from tests.conftest import run_config as run

    cfg = compose_config(
        [
            "logger=none",
            "sim.steps=3",
            "sim.seeds=[0]",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
        ]
    )
    folder = RunFolder(tmp_path / "run")
    from rectest.pipeline.compose import identity

    folder.claim(identity(cfg))
    if content == "garbage":
        folder.checkpoint.write_bytes(b"not a checkpoint at all")
    elif content == "truncated":
        torch.save({"sim": {"t": torch.tensor(1)}}, folder.checkpoint)
        folder.checkpoint.write_bytes(folder.checkpoint.read_bytes()[:40])
    elif content == "code":
        torch.save({"sim": _Evil()}, folder.checkpoint)
    else:  # loads fine but belongs to another simulation
        torch.save({"sim": {"t": 1}, "history_rows": 0, "last_logged_step": 0}, folder.checkpoint)
    with pytest.raises(ConfigError, match="checkpoint"):
        run(cfg, folder.root)
    assert not Path("/tmp/rectest-pwned").exists()
