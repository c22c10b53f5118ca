"""Time to polarization: the first r-polarized step as a function of one variable at a time, with its
spread across seeds and the fitted scaling ``T_pol ~ x^b`` (``convergence.md``, ``figures/convergence.png``).

The variables are ``eta_u``, ``eta_c`` and ``beta`` (swept keys) and the world's ``m``, ``n`` and ``d``.
The replicas may come from one run (``sim.grids`` with one grid per variable, ``+experiment=convergence``) or
from several (a Hydra multirun over ``data.n_users``, ...): ``python -m rectest.report.convergence DIR...``
pools every ``summary.json`` under the folders given.

For a variable ``x``: the replicas whose other variables, and every other swept value (``k``, ``eps``,
``creator_rule``, ...), sit at the design's centre (the setting that recurs most: once in every grid or run); of those, the ones that polarized within the horizon enter a least-squares
fit of ``log T_pol = a + b log x``. The 95% interval of ``b`` is a percentile bootstrap over those replicas
(2,000 resamples, seed 0). Replicas that never polarized are counted, not fitted (the fit is conditional on
polarizing within the horizon). A variable needs at least three positive values with a polarized replica.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rectest.errors import DataError
from rectest.files import atomic_write_text
from rectest.report.layout import FIGURES_DIR, SUMMARY_FILE, TB_DIR
from rectest.report.run_reports import VARIABLES
from rectest.report.summary import read_summary, report_command
from rectest.report.values import format_number, format_value, markdown_table, normalize_value

CONVERGENCE_TABLE = "convergence.md"
CONVERGENCE_FIGURE = "convergence.png"
BOOTSTRAP = 2000
MIN_VALUES = 3


def replica_table(summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per distinct replica of every summary: the six variables, the seed, the first polarized step
    (None: never), the horizon and whether the theorem's conditions hold. A replica that repeats another (the
    same values, seed and horizon: the reference setting of each grid) is kept once.

    Raises:
        DataError: a summary without the per-replica records (written before this report existed).
    """
    out, seen = [], {}
    for summary in summaries:
        if not all(key in summary for key in ("values", "polarized_at", "world")):
            raise DataError("the summary lacks values / polarized_at / world: re-run it with this version")
        theorem = summary.get("theorem") or [{}] * len(summary["values"])
        seeds = [r["seed"] for r in sorted(summary["replicas"], key=lambda r: r["replica"])]
        for values, first, verdict, seed in zip(
            summary["values"], summary["polarized_at"], theorem, seeds, strict=True
        ):
            record = {v: normalize_value(values.get(v)) for v in ("eta_u", "eta_c", "beta")}
            # every other swept value (k, eps, creator_rule, ...): replicas that differ in one are others
            record["others"] = tuple(
                sorted(
                    (k, str(normalize_value(v))) for k, v in values.items() if k not in (*VARIABLES, "family")
                )
            )
            record.update({v: int(summary["world"][v]) for v in ("m", "n", "d")})
            record["first"] = first
            record["horizon"] = summary.get("horizon")
            record["theorem"] = bool(verdict.get("theorem_applies", False))
            record["seed"] = seed
            key = tuple(str(record[k]) for k in (*VARIABLES, "others", "seed", "horizon"))
            if key in seen:  # the reference setting recurs in every grid, with the same seeds
                seen[key]["copies"] += 1
            else:
                record["copies"] = 1
                seen[key] = record
                out.append(record)
    return out


def _reference(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The centre of a one-at-a-time design: the setting that recurs most (once per grid or run, so more
    often than any other), ties to the first seen."""
    names = (*VARIABLES, "others")
    counts = Counter()
    first: dict[tuple, Mapping[str, Any]] = {}
    for r in records:
        key = tuple(str(r[v]) for v in names)
        counts[key] += r.get("copies", 1)
        first.setdefault(key, r)
    best = counts.most_common(1)[0][0]  # (ties keep the first seen)
    return {v: first[best][v] for v in names}


def fit(xs: Sequence[float], ts: Sequence[float], seed: int = 0) -> dict[str, float]:
    """Least squares ``log t = a + b log x``; ``b`` with a 95% percentile-bootstrap interval.

    Returns:
        ``{"exponent", "low", "high", "intercept"}``.
    """
    lx, lt = np.log(np.asarray(xs, float)), np.log(np.asarray(ts, float))
    b, a = np.polyfit(lx, lt, 1)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(lx), len(lx))
        if np.ptp(lx[idx]) > 0:  # a resample with a single x value has no slope
            draws.append(np.polyfit(lx[idx], lt[idx], 1)[0])
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (math.nan, math.nan)
    return {"exponent": float(b), "low": float(low), "high": float(high), "intercept": float(a)}


def convergence_study(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per variable that varies (one at a time around the most common setting): per value, the seeds that
    polarized and the spread of their first polarized step; and the fit when it is possible."""
    reference = _reference(records)
    study = []
    for var in VARIABLES:
        others = [v for v in (*VARIABLES, "others") if v != var]
        mine = [r for r in records if all(str(r[o]) == str(reference[o]) for o in others)]
        values = sorted({r[var] for r in mine if r[var] is not None}, key=float)
        if len(values) < 2:
            continue
        rows = []
        for x in values:
            firsts = [r["first"] for r in mine if r[var] == x]
            hits = np.asarray([t for t in firsts if t is not None], float)
            rows.append(
                {
                    "value": x,
                    "replicas": len(firsts),
                    "polarized": len(hits),
                    "mean": float(hits.mean()) if len(hits) else None,
                    "median": float(np.median(hits)) if len(hits) else None,
                    "min": float(hits.min()) if len(hits) else None,
                    "max": float(hits.max()) if len(hits) else None,
                    "theorem": all(r["theorem"] for r in mine if r[var] == x),
                }
            )
        points = [
            (float(r[var]), float(r["first"]))
            for r in mine
            if r["first"] is not None and r["first"] > 0 and 0 < float(r[var]) < math.inf
        ]
        enough = len({x for x, _ in points}) >= MIN_VALUES
        study.append(
            {
                "variable": var,
                "rows": rows,
                "fit": fit(*zip(*points, strict=True)) if enough else None,
                "points": points,
            }
        )
    return study


def convergence_markdown(study: Sequence[Mapping[str, Any]], title: str) -> str:
    """The study as Markdown: one fit line per variable, then the per-value table."""

    def fit_cells(s: Mapping[str, Any]) -> list[str]:
        f = s["fit"]
        if f is None:
            return [s["variable"], "-", "-", f"fewer than {MIN_VALUES} values polarized"]
        n_values = len({x for x, _ in s["points"]})
        interval = f"[{f['low']:.2f}, {f['high']:.2f}]"
        return [s["variable"], f"{f['exponent']:.2f}", interval, f"{n_values} ({len(s['points'])} replicas)"]

    def value_cells(var: str, r: Mapping[str, Any]) -> list[str]:
        stats = [format_number(r[k], 0) for k in ("mean", "median", "min", "max")]
        return [
            var,
            format_value(r["value"]),
            f"{r['polarized']}/{r['replicas']}",
            *stats,
            "yes" if r["theorem"] else "no",
        ]

    lines = [
        f"# {title}: time to polarization",
        "",
        "First r-polarized step per replica; the exponent b of T_pol ~ x^b is a least-squares fit on log-log "
        "axes over the replicas that polarized, with a 95% percentile-bootstrap interval (2,000 resamples).",
        "",
        *markdown_table(["variable", "exponent b", "95% interval", "values fitted"], map(fit_cells, study)),
        "",
        *markdown_table(
            ["variable", "value", "polarized", "mean", "median", "min", "max", "theorem applies"],
            (value_cells(s["variable"], r) for s in study for r in s["rows"]),
        ),
    ]
    return "\n".join(lines) + "\n"


def convergence_figure(study: Sequence[Mapping[str, Any]], title: str):
    """One log-log panel per variable: each polarized replica's first step, and the fitted line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    cols = min(3, max(len(study), 1))
    rows_n = -(-max(len(study), 1) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows_n), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows_n, cols, squeeze=False).ravel())
    for ax, s in zip(axes, study, strict=False):
        if s["points"]:
            xs, ts = zip(*s["points"], strict=True)
            ax.scatter(xs, ts, s=14, alpha=0.6)
        f = s["fit"]
        if f is not None:
            grid = np.geomspace(min(xs), max(xs), 50)
            ax.plot(
                grid,
                np.exp(f["intercept"]) * grid ** f["exponent"],
                color="C3",
                label=f"b = {f['exponent']:.2f} [{f['low']:.2f}, {f['high']:.2f}]",
            )
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        values = [float(r["value"]) for r in s["rows"] if 0 < float(r["value"]) < math.inf]
        ax.set_xticks(values, [format_value(v) for v in values])  # the design's values, not decades
        ax.xaxis.set_minor_formatter(NullFormatter())
        censored = sum(r["replicas"] - r["polarized"] for r in s["rows"])
        if censored:
            ax.set_title(f"{censored} replica(s) never polarized (not fitted)", fontsize=8)
        ax.set_xlabel(s["variable"])
        ax.set_ylabel("first polarized step")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[len(study) :]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: time to polarization")
    return fig


def write_convergence(
    summaries: Sequence[Mapping[str, Any]], out_dir: Path, title: str, figures: bool = True
) -> list[Path]:
    """Write ``convergence.md`` (and ``figures/convergence.png``) under ``out_dir``; return the paths.

    Raises:
        DataError: no variable varies, or a summary lacks the per-replica records.
    """
    study = convergence_study(replica_table(summaries))
    if not study:
        raise DataError(f"no variable among {', '.join(VARIABLES)} takes two values: nothing to fit")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_text(out_dir / CONVERGENCE_TABLE, convergence_markdown(study, title))]
    if figures:
        from rectest.report.figures import save_figure

        written.append(
            save_figure(convergence_figure(study, title), out_dir / FIGURES_DIR / CONVERGENCE_FIGURE)
        )
    return written


def pool_folders(folders: Sequence[Path], out: Path, tensorboard: bool = False) -> list[Path]:
    """Pool every ``summary.json`` in ``folders`` (or below them) into ``out``; return the paths written.

    With ``tensorboard``, the table and the figure also go to ``out/tb`` (Text and Images).

    Raises:
        DataError: no summary found, or nothing to fit.
    """
    paths = sorted(
        {p for folder in folders for p in [folder / SUMMARY_FILE, *folder.rglob(SUMMARY_FILE)] if p.is_file()}
    )
    if not paths:
        raise DataError(f"no {SUMMARY_FILE} under {', '.join(map(str, folders))}")
    written = write_convergence([read_summary(p) for p in paths], out, out.name)
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        from rectest.report.tensorboard import log_figure

        with SummaryWriter(str(out / TB_DIR)) as writer:
            writer.add_text("convergence", written[0].read_text())
            log_figure(writer, "figures/convergence", written[1])
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m rectest.report.convergence DIR [DIR ...] [--out DIR]``: pool the runs' summaries."""
    parser = argparse.ArgumentParser(
        prog="python -m rectest.report.convergence", description=__doc__.split("\n")[0]
    )
    parser.add_argument("folders", type=Path, nargs="+", help="run folders, or folders holding run folders")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the first folder)")
    args = parser.parse_args(argv)
    return report_command(lambda: pool_folders(args.folders, args.out or args.folders[0]))


if __name__ == "__main__":
    sys.exit(main())
