"""TensorBoard helpers over :class:`torch.utils.tensorboard.SummaryWriter`.

Layout chosen for simulation scalars: **one run (sub-folder) per swept setting, one tag per measure**.
``tb/k=1/``, ``tb/k=10/``, ... (``tb/policy.k=1,policy.beta=inf/`` for several keys; ``tb/all/`` without a
sweep), each holding the tags ``sim/CD``, ``sim/RD``, ``sim/RR``, ``sim/TP``, ``sim/UD``,
``sim/clusters``, ``sim/polarized``: the mean across seeds at each logged step. TensorBoard then overlays
the settings in one chart per measure, like the paper's figures. Per-run hyper-parameters go to the
HParams plugin with :func:`log_hparams`, whose metrics are the ``sim/`` series (their last value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from google.protobuf import text_format
from matplotlib.figure import Figure
from tensorboard.plugins import projector as tb_projector
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from rectest.report.geometry import GEOMETRY as GEOMETRY_TAG
from rectest.report.geometry import geometry_lines
from rectest.report.groups import setting_groups
from rectest.report.layout import TB_DIR
from rectest.report.values import (
    EXITS,
    MEASURES,
    PAPER_MEASURES,
    REPLICA,
    STEP,
    format_value,
    normalize_value,
)

SIM_PREFIX = "sim/"
"""``{"CD": "sim/CD", ...}``: the scalar tag of each measure."""
NO_SWEEP_RUN = "all"
SUMMARY_RUN = "summary"  # the run of what belongs to the whole sweep: figures, tables, the starting state
MAX_PROJECTOR_USERS = 2000
METADATA_HEADER = ["kind", "index", "id"]
USER_LABEL = "user"
CREATOR_LABEL = "creator"


def sim_tag(measure: str) -> str:
    """``"sim/<measure>"``."""
    return SIM_PREFIX + measure


def run_name(params: Mapping[str, Any]) -> str:
    """The sub-folder of one setting: ``k=1``, ``policy.k=1,policy.beta=inf``, or ``all`` without a sweep."""
    if not params:
        return NO_SWEEP_RUN
    name = ",".join(f"{k}={format_value(v)}" for k, v in params.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)


class SimScalarLogger:
    """Writes ``sim/<measure>`` scalars, one TensorBoard run per swept setting.

    Args:
        tb_dir: the run folder's ``tb/``.
        sweep_keys: the swept columns of the frames passed to :meth:`log`.

        purge_step: for a resumed run, the time t of its checkpoint (the first step it runs again): events
            at that step and later, written before the restart, are discarded by TensorBoard (the resumed
            run writes them again).

    Call :meth:`log` with all replicas of the logged steps at once (the mean is taken across the rows of
    a setting at each step), then :meth:`close`.
    """

    def __init__(self, tb_dir: Path, sweep_keys: Sequence[str], purge_step: int | None = None) -> None:
        self.tb_dir = Path(tb_dir)
        self.sweep_keys = list(sweep_keys)
        self.purge_step = purge_step
        self._writers: dict[str, SummaryWriter] = {}
        self.first_replica: dict[str, int] = {}  # run name -> its lowest replica index seen
        self.params: dict[str, dict[str, Any]] = {}  # run name -> its swept values

    def _open(self, log_dir: Path) -> SummaryWriter:
        # TensorBoard drops the events at steps >= purge_step: the ones the resumed run writes again
        return SummaryWriter(log_dir=str(log_dir), purge_step=self.purge_step)

    def writer(self, params: Mapping[str, Any]) -> SummaryWriter:
        """The writer of one setting's run (created on first use)."""
        name = run_name(params)
        if name not in self._writers:
            self._writers[name] = self._open(self.tb_dir / name)
            self.params[name] = dict(params)
        return self._writers[name]

    def log(self, frame: pd.DataFrame) -> int:
        """Write the mean across seeds of every measure present, per setting and step.

        Args:
            frame: long-format rows (one or more steps, all replicas of each step).

        Returns:
            The number of scalars written.
        """
        measures = [m for m in (*MEASURES, EXITS) if m in frame.columns]
        count = 0
        for params, rows in setting_groups(frame, self.sweep_keys):
            writer = self.writer(params)
            if REPLICA in rows.columns:
                first = int(rows[REPLICA].min())
                name = run_name(params)
                self.first_replica[name] = min(first, self.first_replica.get(name, first))
            means = rows.groupby(STEP, sort=True)[measures].mean()  # (steps, measures): one pass for all
            for measure in measures:
                for step, mean in zip(means.index, means[measure], strict=True):
                    writer.add_scalar(sim_tag(measure), float(mean), global_step=int(step))
                    count += 1
            writer.flush()
        return count

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> SimScalarLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SimWriters(SimScalarLogger):
    """Everything a simulation run writes to ``tb/``: the pipeline's one TensorBoard object.

    Per swept setting (run ``tb/<key>=<value>/``): ``sim/<measure>`` scalars (:meth:`scalars`), an
    embedding-projector snapshot of its first replica (:meth:`projector`) and an HParams entry with the
    final means (:meth:`hparams`). In the run ``tb/summary/``: figures (:meth:`figure`), tables (:meth:`text`) and the projector
    snapshot of the shared starting state when no setting has been logged yet.

    Args:
        tb_dir: the run folder's ``tb/``.
        sweep_keys: the swept columns.
        purge_step: see :class:`SimScalarLogger`.
    """

    def __init__(self, tb_dir: Path, sweep_keys: Sequence[str], purge_step: int | None = None) -> None:
        super().__init__(tb_dir, sweep_keys, purge_step)
        self._root: SummaryWriter | None = None

    @property
    def root(self) -> SummaryWriter:
        """The writer of the run ``tb/summary/`` (figures, tables, the starting state)."""
        if self._root is None:
            self._root = self._open(self.tb_dir / SUMMARY_RUN)
        return self._root

    def scalars(self, frame: pd.DataFrame) -> int:
        """Same as :meth:`SimScalarLogger.log`."""
        return self.log(frame)

    def figure(self, figure: Figure | Path | str, tag: str = "figures/measures", step: int = 0) -> None:
        """Log a figure (object or PNG path) as an image in the summary run."""
        log_figure(self.root, tag, figure, step)

    def projector(self, users: torch.Tensor, creators: torch.Tensor, step: int, start: Any = None) -> int:
        """Embedding-projector snapshots of the state.

        Args:
            users: (R, m, d) per replica, or (m, d).
            creators: (R, n, d) per replica, or (n, d).
            step: the simulation step.
            start: optional object with ``user_ids`` (m,) and ``creator_ids`` (n,) original ids.

        One snapshot per setting seen by :meth:`scalars` (its first replica), tag ``state``; before any,
        one snapshot of replica 0 in the summary run, tag ``start``. Returns the number of snapshots.
        """
        ids = None
        if start is not None and getattr(start, "user_ids", None) is not None:
            ids = (list(start.user_ids), list(start.creator_ids))
        if users.dim() == 2:
            users, creators = users.unsqueeze(0), creators.unsqueeze(0)  # (1, m, d), (1, n, d)
        if not self.first_replica:
            log_projector(self.root, users[0], creators[0], step, "start", ids=ids)
            return 1
        for name, r in self.first_replica.items():
            log_projector(self._writers[name], users[r], creators[r], step, "state", ids=ids)
        return len(self.first_replica)

    def hparams(self, summary: Mapping[str, Any]) -> None:
        """One HParams entry per setting: its swept values and seed count; its metrics are the settings'
        ``sim/<measure>`` series, whose last value (the final mean over seeds) the plugin shows."""
        for group in summary["groups"]:
            writer = self.writer(group["params"])
            hp = {**group["params"], "n_seeds": group["n_seeds"]}
            log_hparams(writer, hp, [sim_tag(m) for m in PAPER_MEASURES if m in group["final"]])

    def text(self, tag: str, markdown: str) -> None:
        """A markdown text (e.g. table.md) in the summary run's Text tab."""
        self.root.add_text(tag, markdown, 0)

    def geometry(self, geometry: Mapping[str, Any]) -> None:
        """The starting state's geometry in the summary run: the table as text (tag ``geometry``) and each
        measure of the starting state as a scalar ``geometry/<measure>`` at step 0."""
        self.root.add_text(GEOMETRY_TAG, "\n".join(geometry_lines(geometry)), 0)
        for key, value in geometry["start"].items():
            self.root.add_scalar(f"{GEOMETRY_TAG}/{key}", value, 0)

    def close(self) -> None:
        super().close()
        if self._root is not None:
            self._root.close()
            self._root = None


def _hparam_value(value: Any) -> bool | int | float | str:
    value = normalize_value(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)  # None, lists, ... are shown as text


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"policy": {"k": 1}}`` -> ``{"policy.k": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def log_hparams(writer: SummaryWriter, hparams: Mapping[str, Any], metric_tags: Sequence[str]) -> None:
    """Record hyper-parameters for TensorBoard's HParams plugin, in ``writer``'s run.

    The plugin shows, per run, the last value of each metric's scalar series: with ``metric_tags`` the
    ``sim/<measure>`` tags, that is the final value (mean over seeds) of each measure, with no extra
    one-point scalar series.

    Args:
        writer: the run's writer (the summary goes into its own folder, not a time-stamped sub-run).
        hparams: possibly nested; flattened with dots; None, lists and other objects are logged as text.
        metric_tags: scalar tags of the run to show as the HParams table's metrics.
    """
    flat = {k: _hparam_value(v) for k, v in flatten(hparams).items()}
    exp, ssi, sei = hparams_summary(
        flat, {tag: 0.0 for tag in metric_tags}
    )  # values are read from the scalars
    file_writer = writer._get_file_writer()
    for summary in (exp, ssi, sei):
        file_writer.add_summary(summary)
    writer.flush()


def log_projector(
    writer: SummaryWriter,
    users: torch.Tensor,
    creators: torch.Tensor,
    step: int,
    tag: str,
    max_users: int = MAX_PROJECTOR_USERS,
    ids: tuple[Sequence[Any], Sequence[Any]] | None = None,
) -> int:
    """An embedding-projector snapshot of users and creators together, labelled by kind.

    Args:
        writer: the run's writer.
        users: (m, d) user vectors; an evenly spaced subsample of at most ``max_users`` rows is kept
            (deterministic, so snapshots at different steps show the same users).
        creators: (n, d) creator vectors (all kept).
        step: the simulation step (the projector's checkpoint name).
        tag: the embedding's name (e.g. ``"state/k=1"``).
        max_users: cap on the users kept.
        ids: ``(user_ids (m,), creator_ids (n,))`` original ids shown in the ``id`` metadata column
            (e.g. MovieLens ids); None shows row indices.

    Returns:
        The number of points written (kept users + n).
    """
    users = users.detach().float().cpu()  # (m, d)
    creators = creators.detach().float().cpu()  # (n, d)
    keep = torch.linspace(0, users.shape[0] - 1, steps=min(max_users, users.shape[0])).round().long()
    keep = torch.unique(keep)  # (m',) sorted user indices
    points = torch.cat([users[keep], creators])  # (m' + n, d)
    user_ids, creator_ids = ids if ids is not None else (range(users.shape[0]), range(creators.shape[0]))
    metadata = [[USER_LABEL, str(int(j)), str(user_ids[int(j)])] for j in keep]
    metadata += [[CREATOR_LABEL, str(i), str(creator_ids[i])] for i in range(creators.shape[0])]
    add_embedding(writer, points, metadata, step, tag, METADATA_HEADER)
    writer.flush()
    return points.shape[0]


def add_embedding(
    writer: SummaryWriter,
    points: torch.Tensor,
    metadata: Sequence[Sequence[str]],
    step: int,
    tag: str,
    header: Sequence[str],
) -> None:
    """``writer.add_embedding(points, metadata, global_step=step, tag=tag, metadata_header=header)``, the same
    files, written 5-10x faster.

    torch writes ``tensors.tsv`` one ``.item()`` a coordinate (about 0.3 s for ml-100k's 2,625 x 64 points,
    once per swept setting); here the rows are formatted from one ``tolist()`` (the same ``str`` of each
    float). The projector's config lists every snapshot of the run: it is read back and extended, as
    TensorBoard's :func:`visualize_embeddings` writes it.

    Args:
        writer: the run's writer (its log directory holds the snapshot).
        points: ``(N, d)`` float vectors.
        metadata: ``N`` rows of labels, one per column of ``header``.
        step: the snapshot's step (its folder ``{step:05d}``).
        tag: the embedding's name.
        header: the metadata's column names.
    """
    logdir = Path(writer.get_logdir())
    subdir = f"{str(step).zfill(5)}/{tag.replace('%', '%25').replace('/', '%2f').replace(chr(92), '%5c')}"
    (logdir / subdir).mkdir(parents=True, exist_ok=True)
    rows = ["\t".join(str(e) for e in row) for row in [header, *metadata]]
    (logdir / subdir / "metadata.tsv").write_text("\n".join(rows) + "\n")
    values = points.detach().cpu().numpy().tolist()  # (N, d) Python floats, as torch's .item() gives
    (logdir / subdir / "tensors.tsv").write_text("".join("\t".join(map(str, r)) + "\n" for r in values))
    config = tb_projector.ProjectorConfig()
    path = logdir / "projector_config.pbtxt"
    if path.exists():
        text_format.Merge(path.read_text(), config)
    info = config.embeddings.add()
    info.tensor_name = f"{tag}:{str(step).zfill(5)}"
    info.tensor_path = f"{subdir}/tensors.tsv"
    info.metadata_path = f"{subdir}/metadata.tsv"
    tb_projector.visualize_embeddings(str(logdir), config)


def log_figure(writer: SummaryWriter, tag: str, figure: Figure | Path | str, step: int = 0) -> None:
    """Log a matplotlib figure or a saved PNG as an image.

    Args:
        writer: the run's writer.
        tag: the image tag (e.g. ``"figures/measures"``).
        figure: a :class:`~matplotlib.figure.Figure` or the path of an image file.
        step: the global step.
    """
    if isinstance(figure, Figure):
        writer.add_figure(tag, figure, global_step=step, close=False)
    else:
        from matplotlib.image import imread

        image = np.asarray(imread(str(figure)))  # (H, W, C) floats in [0, 1] for PNG
        if image.dtype != np.uint8:
            image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
        if image.ndim == 2:
            image = image[:, :, None]
        writer.add_image(tag, image, global_step=step, dataformats="HWC")
    writer.flush()


__all__ = [
    "SIM_PREFIX",
    "TB_DIR",
    "SimScalarLogger",
    "SimWriters",
    "log_figure",
    "log_hparams",
    "log_projector",
    "run_name",
    "sim_tag",
]
