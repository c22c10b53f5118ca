"""Shared test helpers: the repo's config folder, composing configs, the real MovieLens copies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import rectest.config  # noqa: F401  (registers the schemas)

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
SHARED_MOVIELENS = Path(os.environ.get("RECTEST_SHARED_DATA", REPO.parent / "shared" / "data" / "movielens"))


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose the real primary config with overrides, as the command line would."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [], return_hydra_config=False)


@pytest.fixture
def shared_movielens() -> Path:
    """The team's real MovieLens copies (skip when this machine has none)."""
    if not (SHARED_MOVIELENS / "ml-100k" / "u.data").exists():
        pytest.skip(f"real MovieLens copies not found under {SHARED_MOVIELENS} (set RECTEST_SHARED_DATA)")
    return SHARED_MOVIELENS
