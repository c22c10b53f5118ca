"""PNG figures in the paper's style: measures against time, one line per swept value, a band across seeds.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` rendered by the Agg canvas, never through
``pyplot``, so nothing depends on (or changes) the interactive backend of a notebook or a headless machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rectest.report.groups import setting_groups, step_stats
from rectest.report.values import CD, PAPER_MEASURES, RD, RR, STEP, TP, setting_label

BANDS = ("stderr", "minmax", "none")
DPI = 120
LONG_NAMES = {
    CD: "Creator diversity (CD)",
    RD: "Recommendation diversity (RD)",
    RR: "Recommendation relevance (RR)",
    TP: "Tendency to polarization (TP)",
    "UD": "User diversity (UD)",
    "clusters": "Creator clusters",
    "polarized": "Polarized (fraction of seeds)",
    "exits": "Creators replaced so far (churn)",
}


LINE_STYLES = ("-", "--", "-.", ":")


def _colors(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if n <= 10 else colormaps["viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def _draw(ax: Axes, frame: pd.DataFrame, sweep_keys: Sequence[str], measure: str, band: str) -> None:
    """One line per setting (mean across seeds) and, unless ``band == "none"``, its shaded band."""
    groups = setting_groups(frame, sweep_keys)
    for i, ((params, rows), color) in enumerate(zip(groups, _colors(len(groups)), strict=True)):
        stats = step_stats(rows, measure)  # (L,) per logged step
        steps = stats.index.to_numpy(dtype=float)
        # overlapping lines (e.g. every setting polarized at the same step) stay visible: the first
        # settings are drawn widest and each has its own dash pattern
        width = 1.2 + 2.0 * (len(groups) - 1 - i) / max(len(groups) - 1, 1)
        style = LINE_STYLES[i % len(LINE_STYLES)]
        ax.plot(steps, stats["mean"].to_numpy(), color=color, lw=width, ls=style, label=setting_label(params))
        if band == "stderr":
            lo, hi = stats["mean"] - stats["stderr"], stats["mean"] + stats["stderr"]
        elif band == "minmax":
            lo, hi = stats["min"], stats["max"]
        else:
            continue
        ax.fill_between(steps, lo.to_numpy(), hi.to_numpy(), color=color, alpha=0.2, linewidth=0)
    ax.set_title(LONG_NAMES.get(measure, measure), fontsize=10)
    ax.grid(alpha=0.3)


def _check(frame: pd.DataFrame, measures: Sequence[str], band: str) -> None:
    missing = [c for c in (STEP, *measures) if c not in frame.columns]
    if missing:
        raise ValueError(f"metrics frame lacks columns {missing}")
    if band not in BANDS:
        raise ValueError(f"band {band!r}: expected one of {BANDS}")


def measures_figure(
    frame: pd.DataFrame,
    sweep_keys: Sequence[str],
    title: str,
    measures: Sequence[str] = PAPER_MEASURES,
    band: str = "stderr",
) -> Figure:
    """A grid of panels, one per measure, against time; one line per swept setting.

    Args:
        frame: long-format metrics (one row per replica and logged step).
        sweep_keys: the swept columns; each distinct combination is one line (mean across seeds).
        title: the figure's title.
        measures: one panel each (default the paper's CD, RD, RR, TP, laid out 2 x 2).
        band: ``"stderr"`` (mean ± standard error across seeds), ``"minmax"`` or ``"none"``.

    Returns:
        The figure (attached to an Agg canvas); each panel holds exactly one line per setting.
    """
    _check(frame, measures, band)
    n_cols = 2 if len(measures) > 1 else 1
    n_rows = -(-len(measures) // n_cols)
    fig = Figure(figsize=(5.0 * n_cols, 3.4 * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True).ravel()
    for index, (ax, measure) in enumerate(zip(axes, measures, strict=False)):
        _draw(ax, frame, sweep_keys, measure, band)
        if index + n_cols >= len(measures):  # nothing drawn below this panel
            ax.set_xlabel("time step")
    for ax in axes[len(measures) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=9, title=", ".join(sweep_keys) or None)
    fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as PNG (creating the folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def plot_measures(
    frame: pd.DataFrame, sweep_keys: Sequence[str], path: Path, title: str, band: str = "stderr"
) -> Path:
    """Write the paper-style 4-panel PNG (CD, RD, RR, TP against time) and return its path."""
    return save_figure(measures_figure(frame, sweep_keys, title, PAPER_MEASURES, band), path)


def plot_measure(
    frame: pd.DataFrame, sweep_keys: Sequence[str], measure: str, path: Path, title: str, band: str = "stderr"
) -> Path:
    """Write a one-panel PNG of a single measure (e.g. ``"clusters"`` or ``"UD"``) and return its path."""
    return save_figure(measures_figure(frame, sweep_keys, title, [measure], band), path)
