"""The README's Python API example runs as printed."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)  # the example saves ckpt.pt
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["hist"]["TP"].shape == (21, 4)  # logged every 10 of 200 steps, plus the last
    assert len(namespace["frame"]) == 21 * 4
    assert (tmp_path / "ckpt.pt").exists()


def test_readme_pipeline_example_runs_without_hydra_at_the_cli_thread_count(tmp_path, monkeypatch):
    import json

    import torch

    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2, "README.md has no pipeline example"
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    namespace: dict = {}
    try:
        exec(compile(blocks[1], "README.md", "exec"), namespace)  # noqa: S102
        assert torch.get_num_threads() == 1  # 2 seeds x 4 k x 100 users x 50 creators: a small problem
    finally:
        torch.set_num_threads(threads)
    folder = namespace["folder"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["horizon"] == 200 and len(summary["replicas"]) == 8
    assert {tuple(sorted(r["params"].items())) for r in summary["replicas"]} == {
        (("k", k),) for k in (1, 5, 10, 50)
    }
