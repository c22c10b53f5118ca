"""The run folder: where each file of a run lives, and whether a run is new, resumable or complete.

Contract (design.md section 3): ``.hydra/``, ``tb/``, ``metrics.csv``, ``summary.json``, ``embeddings/``,
``figures/``, ``table.md``. rectest adds ``config.yaml`` (the resolved config, to recognise a resume),
``checkpoint.pt`` (the simulation state, written atomically) and ``retrain.csv`` (learned-recommender error).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from rectest.errors import ConfigError
from rectest.report.atomic import atomic_write_text

# the keys that do not change what a run computes (a resumed run may differ in these)
_IGNORED_ON_RESUME = ("logger", "run_name")


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    root: Path

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def table(self) -> Path:
        return self.root / "table.md"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def retrain_log(self) -> Path:
        return self.root / "retrain.csv"

    def is_complete(self) -> bool:
        return self.summary.exists()

    def claim(self, cfg: DictConfig) -> bool:
        """Take the folder for this config; return True when an interrupted run is to be resumed.

        Raises:
            ConfigError: the folder holds a finished run, or a run of a different configuration.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        mine = _comparable(cfg)
        if self.config.exists():
            theirs = OmegaConf.to_yaml(OmegaConf.load(self.config))
            if theirs != mine:
                raise ConfigError(
                    f"run folder {self.root} holds a run with a different configuration; "
                    "choose another run_name (runs never overwrite each other)"
                )
            if self.is_complete():
                raise ConfigError(
                    f"run folder {self.root} holds a finished run; choose another run_name "
                    "(runs never overwrite each other)"
                )
            if self.checkpoint.exists():
                return True
            self._clear_partial()  # killed before its first checkpoint: start again from nothing
            return False
        atomic_write_text(self.config, mine)
        return False

    def _clear_partial(self) -> None:
        """Remove what an attempt that never checkpointed left behind (keeps the config and Hydra's files)."""
        keep = {self.config.name, ".hydra", "train.log"}
        for path in self.root.iterdir():
            if path.name in keep:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _comparable(cfg: DictConfig) -> str:
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    for key in _IGNORED_ON_RESUME:
        plain.pop(key, None)
    return OmegaConf.to_yaml(OmegaConf.create(plain))


def save_checkpoint(path: Path, state: dict) -> None:
    """Save a checkpoint atomically (a kill mid-write leaves the previous one intact)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint without executing code (``weights_only=True``).

    Raises:
        ConfigError: the file is not a rectest checkpoint.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (any failure means the file is unusable)
        raise ConfigError(
            f"checkpoint {path}: cannot be read as a rectest checkpoint ({type(err).__name__})"
        ) from None
