"""Two processes on one run folder, and Ctrl-C: the run folder's lock and the interrupt contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO


def _start(run_dir, *extra: str, **kwargs) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "rectest.train", "+experiment=topk", "sim.steps=150", "trainer.max_epochs=5",
        f"hydra.run.dir={run_dir}", "logger.projector=false", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def _wait_for(path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_second_process_on_the_same_run_is_refused_at_once(tmp_path):
    run_dir = tmp_path / "conc"
    first = _start(run_dir, "sim.steps=10000", "sim.log_every=500")  # busy long after the second is refused
    _wait_for(run_dir / "config.yaml")  # the first has claimed the folder
    before = sorted(p.name for p in run_dir.iterdir())
    second = _start(run_dir)
    out, err = second.communicate(timeout=120)
    # refused at once: while the first is still at work, before the second wrote anything of its own
    assert first.poll() is None, "the first run finished before the second was refused"
    assert not (run_dir / "summary.json").exists()
    assert set(before) <= {p.name for p in run_dir.iterdir()}  # nothing of the first's was removed
    assert second.returncode == 2, err[-1500:]
    lines = [ln for ln in err.splitlines() if ln.startswith("rectest: error:")]
    assert len(lines) == 1 and "in use by process" in lines[0] and str(first.pid) in lines[0], err[-1500:]
    assert "Traceback" not in err
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-1500:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"]["last"] == 9999 and len(summary["groups"]) == 4


def test_a_stale_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "stale"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("999999\n")  # left by a process that no longer exists: not locked
    done = subprocess.run(
        [sys.executable, "-m", "rectest.train", "sim.steps=3", "sim.seeds=[0]", "logger=none",
         "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    assert (run_dir / "summary.json").exists()


def test_ctrl_c_prints_one_line_and_the_same_command_resumes(tmp_path):
    run_dir = tmp_path / "intr"
    extra = ("sim.steps=400", "sim.checkpoint_every=20", "sim.seeds=[0,1]")
    # Ctrl-C reaches the run even when the suite itself ignores SIGINT (a shell's background job): a process
    # that starts with SIGINT ignored keeps ignoring it, and Python installs no KeyboardInterrupt
    proc = _start(run_dir, *extra, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(run_dir / "checkpoint.pt")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-1500:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("rectest:")]
    assert (
        len(lines) == 1 and "interrupted at step" in lines[0] and "run the same command to resume" in lines[0]
    )
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "summary.json").exists()
    again = _start(run_dir, *extra)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-1500:]
    assert "resuming" in err
    assert json.loads((run_dir / "summary.json").read_text())["steps"]["last"] == 399


def test_piped_output_is_small_and_has_no_carriage_returns(tmp_path):
    """`make run 2>&1 | cat`: no progress-bar redraws when the output is not a terminal."""
    done = subprocess.run(
        [sys.executable, "-m", "rectest.train", "+experiment=topk", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-1500:]
    assert len(done.stdout) < 20_000 and b"\r" not in done.stdout
    text = done.stdout.decode()
    assert "final measures" in text and "timings:" in text and "Warning" not in text and "Tip" not in text
