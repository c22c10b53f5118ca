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
