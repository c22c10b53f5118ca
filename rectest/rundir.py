"""The run folder: where each file of a run lives, and whether a run is new, resumable or complete.

Contract (design.md section 3): ``.hydra/``, ``tb/``, ``metrics.csv``, ``summary.json``, ``embeddings/``,
``figures/``, ``table.md``. rectest adds ``config.yaml`` (the resolved config, to recognise a resume),
``checkpoint.pt`` (the simulation state, written atomically) and ``retrain.csv`` (learned-recommender error).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rectest.errors import ConfigError
from rectest.files import atomic_write, atomic_write_text

log = logging.getLogger("rectest")
LOCK_FILE = ".lock"
_HELD: dict[str, int] = {}  # run folder -> descriptor of its lock, held by this process


class RunLocked(ConfigError):
    """Another live process holds the run folder."""


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

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    def claim(self, cfg: DictConfig) -> bool:
        """Lock the folder and take it for this config; return True when an interrupted run is to be resumed.

        The lock (``fcntl.flock`` on ``.lock``, holding the owner's process id) is held until
        :meth:`release` or the end of the process, so a second process on the same folder is refused at
        once, and a lock left by a dead process is free again (the kernel releases it). A folder whose run stopped before its first checkpoint (no
        ``checkpoint.pt``, no ``summary.json``) blocks nothing: it is cleared and taken.

        Raises:
            RunLocked: another live process holds the folder.
            ConfigError: the folder holds a finished run, or a checkpointed run of a different configuration.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        mine = _comparable(cfg)
        if self.config.exists():
            theirs = OmegaConf.to_yaml(OmegaConf.load(self.config))
            if theirs != mine and not self.checkpoint.exists() and not self.is_complete():
                log.info(
                    "run folder %s: an attempt with another configuration stopped before its first "
                    "checkpoint; starting afresh",
                    self.root,
                )
                self._clear_partial(keep_config=False)
                atomic_write_text(self.config, mine)
                return False
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

    def lock_now(self) -> None:
        """Take the folder's lock before any other work (the entry point calls it first thing)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()

    def _lock(self) -> None:
        """Take the folder's lock for the life of this process, or raise RunLocked naming its holder."""
        key = str(self.root.resolve())
        if key in _HELD:
            return
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(
                f"run folder {self.root} is in use by process {holder}; wait for it to finish "
                "(then the same command resumes or refuses a finished run) or choose another run_name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = fd  # released when the process ends

    def release(self) -> None:
        """Release the folder's lock early (tests and notebooks running several pipelines in one process)."""
        fd = _HELD.pop(str(self.root.resolve()), None)
        if fd is not None:
            os.close(fd)

    def _clear_partial(self, keep_config: bool = True) -> None:
        """Remove what an attempt that never checkpointed left behind (keeps Hydra's files, the lock and,
        unless told otherwise, the config)."""
        keep = {".hydra", "train.log", LOCK_FILE} | ({self.config.name} if keep_config else set())
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
    import torch

    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint without executing code (``weights_only=True``).

    Raises:
        ConfigError: the file is not a rectest checkpoint.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (any failure means the file is unusable)
        raise ConfigError(
            f"checkpoint {path}: cannot be read as a rectest checkpoint ({type(err).__name__})"
        ) from None
