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

from rectest.errors import ConfigError
from rectest.files import atomic_write, atomic_write_text
from rectest.report import layout

log = logging.getLogger("rectest")
LOCK_FILE = ".lock"
_HELD: dict[str, tuple[int, bool]] = {}  # run folder -> (descriptor of its lock, taken by claim())


class RunLocked(ConfigError):
    """Another live process holds the run folder."""


def _file(name: str) -> property:
    """A path inside the run folder, named in :mod:`rectest.report.layout`."""
    return property(lambda self: self.root / name, doc=f"``{name}`` in the run folder")


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder (the one place that names them)."""

    root: Path

    metrics = _file(layout.METRICS_FILE)
    summary = _file(layout.SUMMARY_FILE)
    table = _file(layout.TABLE_FILE)
    figures = _file(layout.FIGURES_DIR)
    tensorboard = _file(layout.TB_DIR)
    checkpoint = _file(layout.CHECKPOINT_FILE)
    config = _file(layout.CONFIG_FILE)
    retrain_log = _file(layout.RETRAIN_FILE)

    def is_complete(self) -> bool:
        return self.summary.exists()

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    def claim(self, identity: str) -> bool:
        """Lock the folder and take it for this config; return True when an interrupted run is to be resumed.

        The lock (``fcntl.flock`` on ``.lock``, holding the owner's process id) is held until
        :meth:`release` or the end of the process, so a second process on the same folder is refused at
        once, and a lock left by a dead process is free again (the kernel releases it). A folder whose run
        stopped before its first checkpoint (no ``checkpoint.pt``, no ``summary.json``) blocks nothing: it
        is cleared and taken.

        Raises:
            RunLocked: another live process holds the folder.
            ConfigError: the folder holds a finished run, or a checkpointed run of a different configuration.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock(by_claim=True)
        self.refuse_if_taken(identity)
        if self.config.exists():
            if self.config.read_text() != identity:
                log.info(
                    "run folder %s: an attempt with another configuration stopped before its first "
                    "checkpoint; starting afresh",
                    self.root,
                )
                self._clear_partial(keep_config=False)
                atomic_write_text(self.config, identity)
                return False
            if self.checkpoint.exists():
                return True
            self._clear_partial()  # killed before its first checkpoint: start again from nothing
            return False
        atomic_write_text(self.config, identity)
        return False

    def refuse_if_taken(self, identity: str) -> None:
        """Refuse a folder that holds a finished run or a checkpointed run of another configuration.

        The entry point calls it before Hydra writes into the folder, so a refused command leaves the
        other run's files as they were.

        Raises:
            ConfigError: naming the folder and what to do.
        """
        other = self.config.exists() and self.config.read_text() != identity
        if other and (self.checkpoint.exists() or self.is_complete()):
            raise ConfigError(
                f"run folder {self.root} holds a run with a different configuration; "
                "choose another run_name (runs never overwrite each other)"
            )
        if self.is_complete():
            raise ConfigError(
                f"run folder {self.root} holds a finished run; choose another run_name "
                "(runs never overwrite each other)"
            )

    def lock_now(self) -> None:
        """Take the folder's lock for the rest of the process (the entry point, before any other work)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock(by_claim=False)

    def _lock(self, by_claim: bool) -> None:
        """Take the folder's lock, or raise RunLocked naming its holder. Data-parallel workers (rank > 0,
        started by rank 0 on the same folder) train only and take no lock."""
        if int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 or int(os.environ.get("RANK", "0") or 0) > 0:
            return
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
        _HELD[key] = (fd, by_claim)  # released by release() (claim's) or when the process ends

    def release(self) -> None:
        """Release a lock taken by :meth:`claim` (the entry point's lock lasts until the process ends)."""
        key = str(self.root.resolve())
        held = _HELD.get(key)
        if held is not None and held[1]:
            del _HELD[key]
            os.close(held[0])

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
