"""Atomic writes: whole files only, and the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from rectest.files import atomic_write, atomic_write_text


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "summary.json", "{}\n")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode)
    assert path.read_text() == "{}\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "table.md", "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_run_folder_results_get_the_umask_permissions(tmp_path):
    from tests.conftest import compose_config
    from tests.conftest import run_config as run

    old = os.umask(0o022)
    try:
        cfg = ["+experiment=topk", "sim.steps=3", "sim.seeds=[0]", "logger=none", "trainer.max_epochs=1"]
        folder = run(compose_config(cfg), tmp_path / "run")
    finally:
        os.umask(old)
    for name in ("summary.json", "table.md", "metrics.csv", "config.yaml", "embeddings/users.npz"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644, name


def test_a_data_parallel_worker_takes_no_lock(tmp_path, monkeypatch):
    from rectest.pipeline.rundir import RunFolder, RunLocked

    first, second = RunFolder(tmp_path / "run"), RunFolder(tmp_path / "run")
    import fcntl

    first.root.mkdir()
    fd = os.open(first.lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held as if by rank 0's process
    os.write(fd, b"4242\n")
    try:
        with pytest.raises(RunLocked, match="4242"):
            second.lock_now()
        monkeypatch.setenv("LOCAL_RANK", "1")
        second.lock_now()  # rank 1 of a DDP job started by rank 0 on the same folder
    finally:
        os.close(fd)
