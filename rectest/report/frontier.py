"""The diversity frontier of a run whose replicas come from several grids (``sim.grids``, one policy family
each): ``frontier.md`` and ``figures/frontier.png``.

For every setting (a group of ``summary.json``): the long-run system diversity and polarization (CD and TP
at the last logged step) against what users get along the way (RR and RD averaged over the logged steps),
as mean ± standard error across seeds. A setting is on the *relevance front* when no other setting is at least
as good on both time-averaged RR and final CD and better on one (Pareto dominance), and on the *diversity
front* likewise for time-averaged RD and final CD: the trade-off between the diversity of what each user is
shown and the diversity of the whole system that the paper's authors leave open.

Also a command for a finished run folder: ``python -m rectest.report.frontier RUN_DIR``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rectest.errors import DataError
from rectest.files import atomic_write_text
from rectest.report.layout import FIGURES_DIR, SUMMARY_FILE
from rectest.report.summary import read_summary, report_command
from rectest.report.values import CD, FAMILY, RD, RR, TP, format_mean_stderr, markdown_table, setting_label

FRONTIER_TABLE = "frontier.md"
FRONTIER_FIGURE = "frontier.png"
AXES = ((RR, CD), (RR, TP), (RD, CD), (RD, TP))
"""The figure's panels: (time-averaged measure on x, final measure on y)."""
FRONTS = {"relevance_front": RR, "diversity_front": RD}
"""Each front: the time-averaged measure traded against the final CD."""


def frontier_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per setting: family, label, the final and time-averaged stats, and the Pareto flag.

    Raises:
        DataError: the summary has no groups.
    """
    groups = summary.get("groups") or []
    if not groups:
        raise DataError("the summary has no settings: nothing to put on a frontier")
    rows = []
    for g in groups:
        params = dict(g["params"])
        family = str(params.pop(FAMILY, "all"))
        rows.append(
            {
                "family": family,
                "label": setting_label(_distinctive(params, family, groups)),
                "n_seeds": g["n_seeds"],
                "final": {m: g["final"][m] for m in (CD, TP)},
                "time_avg": {m: g["time_avg"][m] for m in (RR, RD)},
            }
        )
    for front, measure in FRONTS.items():
        points = [(r["time_avg"][measure]["mean"], r["final"][CD]["mean"]) for r in rows]
        for row, flag in zip(rows, _undominated(points), strict=True):
            row[front] = flag
    return rows


def _undominated(points: Sequence[tuple[float | None, float | None]]) -> list[bool]:
    """For each (x, y): no other point has x' >= x and y' >= y with one of them strictly greater."""

    def beaten(x: float, y: float) -> bool:
        return any(
            a is not None and b is not None and a >= x and b >= y and (a > x or b > y) for a, b in points
        )

    return [x is not None and y is not None and not beaten(x, y) for x, y in points]


def _distinctive(params: dict[str, Any], family: str, groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The values that tell this setting apart: those that vary within its family or differ from the most
    common value across all settings (``k=5`` of an MMR family on top of top-5)."""
    mine = [g["params"] for g in groups if str(g["params"].get(FAMILY, "all")) == family]
    out = {}
    for key, value in params.items():
        everywhere = [str(g["params"].get(key)) for g in groups]
        mode = max(set(everywhere), key=everywhere.count)
        if len({str(p.get(key)) for p in mine}) > 1 or str(value) != mode:
            out[key] = value
    return out


def frontier_markdown(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    """The frontier as a Markdown table (``R`` / ``D``: on the relevance / diversity front)."""

    def cells(r: Mapping[str, Any]) -> list[str]:
        fronts = " ".join(
            tag for tag, front in (("R", "relevance_front"), ("D", "diversity_front")) if r[front]
        )
        stats = [format_mean_stderr(r["time_avg"][m]) for m in (RR, RD)]
        stats += [format_mean_stderr(r["final"][m]) for m in (CD, TP)]
        return [r["family"], r["label"], str(r["n_seeds"]), *stats, fronts]

    header = ["family", "setting", "seeds", "mean RR", "mean RD", "CD at T", "TP at T", "front"]
    lines = [
        f"# {title}: the diversity frontier",
        "",
        "CD and TP at the last logged step; RR and RD averaged over the logged steps (mean ± stderr over "
        "seeds). Pareto fronts: `R` no other setting is at least as good on mean RR and final CD and better on "
        "one; `D` likewise for mean RD and final CD.",
        "",
        *markdown_table(header, map(cells, rows)),
    ]
    return "\n".join(lines) + "\n"


def _stat(row: Mapping[str, Any], measure: str) -> tuple[float, float]:
    stat = row["final"].get(measure) or row["time_avg"].get(measure)
    mean = stat["mean"] if stat["mean"] is not None else float("nan")
    return mean, stat["stderr"] or 0.0


def frontier_figure(rows: Sequence[Mapping[str, Any]], title: str):
    """Four panels (see :data:`AXES`): one marker family per policy family, error bars of one stderr, the
    two Pareto fronts as dashed lines on the CD panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rectest.report.figures import LONG_NAMES, _colors

    families = list(dict.fromkeys(r["family"] for r in rows))
    markers = "osD^vP*Xh<>p"
    fig = Figure(figsize=(11.0, 8.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).ravel()
    for ax, (xm, ym) in zip(axes, AXES, strict=True):
        for family, color, marker in zip(families, _colors(len(families)), markers * 4, strict=False):
            mine = [r for r in rows if r["family"] == family]
            xs, xe = zip(*(_stat(r, xm) for r in mine), strict=True)
            ys, ye = zip(*(_stat(r, ym) for r in mine), strict=True)
            ax.errorbar(
                xs, ys, xerr=xe, yerr=ye, fmt=marker, color=color, ms=6, capsize=2, lw=1, label=family
            )
        if ym == CD:
            flag = next(front for front, measure in FRONTS.items() if measure == xm)
            front = sorted((_stat(r, xm)[0], _stat(r, CD)[0]) for r in rows if r[flag])
            if front:
                ax.plot(*zip(*front, strict=True), color="0.3", lw=1, ls="--", label="Pareto front", zorder=0)
        ax.set_xlabel(f"mean {LONG_NAMES[xm]}")
        ax.set_ylabel(f"{LONG_NAMES[ym]} at T")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=9, title="policy family")
    fig.suptitle(f"{title}: diversity frontier")
    return fig


def write_frontier(summary: Mapping[str, Any], run_dir: Path, title: str, figures: bool = True) -> list[Path]:
    """Write ``frontier.md`` (and ``figures/frontier.png``) under ``run_dir``; return the paths written."""
    rows = frontier_rows(summary)
    run_dir = Path(run_dir)
    written = [atomic_write_text(run_dir / FRONTIER_TABLE, frontier_markdown(rows, title))]
    if figures:
        from rectest.report.figures import save_figure

        written.append(save_figure(frontier_figure(rows, title), run_dir / FIGURES_DIR / FRONTIER_FIGURE))
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m rectest.report.frontier RUN_DIR``: (re)write the frontier of a finished run."""
    parser = argparse.ArgumentParser(
        prog="python -m rectest.report.frontier", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run_dir", type=Path, help="a finished run folder (it holds summary.json)")
    args = parser.parse_args(argv)
    return report_command(
        lambda: write_frontier(read_summary(args.run_dir / SUMMARY_FILE), args.run_dir, args.run_dir.name)
    )


if __name__ == "__main__":
    sys.exit(main())
