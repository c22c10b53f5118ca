"""Shared test helpers: the repo's config folder, composing configs, the real MovieLens copies."""

from __future__ import annotations

import ast
import os
from pathlib import Path

# Tests run small problems: one thread each is fastest, and subprocesses (CLI, DDP, torchrun) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

import rectest.pipeline.compose  # noqa: F401, E402  (registers the schemas)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
SHARED_MOVIELENS = Path(os.environ.get("RECTEST_SHARED_DATA", REPO.parent / "shared" / "data" / "movielens"))


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose the real primary config with overrides, as the command line would."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [], return_hydra_config=False)


def run_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Run a composed config as the entry point does: the typed spec, then the pipeline."""
    from rectest.pipeline import run
    from rectest.pipeline.compose import build_spec

    return run(build_spec(cfg), run_dir)


@pytest.fixture
def shared_movielens() -> Path:
    """The team's real MovieLens copies (skip when this machine has none)."""
    if not (SHARED_MOVIELENS / "ml-100k" / "u.data").exists():
        pytest.skip(f"real MovieLens copies not found under {SHARED_MOVIELENS} (set RECTEST_SHARED_DATA)")
    return SHARED_MOVIELENS


def imported_names(path: Path) -> set[str]:
    """Absolute module names a Python file imports (``import x.y`` and ``from x.y import z``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names
