"""Put finished MovieLens top-k runs beside the paper's Table 4 and show, per cell, the measured reasons.

``python -m rectest.report.fidelity RUN_DIR [RUN_DIR ...]`` prints one markdown table per run folder (a run
of ``+experiment=topk_movielens`` or any top-k sweep): for every k the final CD and TP (mean ± standard
error over seeds) beside the paper's, the poles of the final state (share of creators and of users on the
majority side, the largest distance to a pole), the closed-form CD / RR / RD of the exact bi-polarized state
with those shares beside the measured ones, and how much TP still moved over the last ``window`` steps
(a curve still moving at T is one reason a cell differs). A first row compares the t = 0 state with the
paper's (CD 1.40, TP 0.20, RR 0.064, RD 0.997 without truncation).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rectest.errors import RectestError
from rectest.report.layout import METRICS_FILE, SUMMARY_FILE
from rectest.report.metrics_log import read_metrics
from rectest.report.paper import paper_reference
from rectest.report.values import STEP, format_mean_stderr, format_number

# The paper's MovieLens starting state (Table 4 at t = 0, no truncation, beta = 1): the values an i.i.d.
# uniform world in d = 16 gives (CD 1.402, TP 0.203, RR ~ 1/16).
PAPER_T0 = {"CD": 1.40, "TP": 0.20, "RR": 0.064, "RD": 0.997}
# Cells of Table 4 that spec section 7 does not list, as read from the paper's table by issue 11's author.
EXTRA_PAPER = {10: {"CD": 1.40, "TP": 0.205}, 1000: {"CD": 0.61, "TP": 0.90}}
WINDOW = 100


def paper_cell(k: int, n: int) -> dict[str, float] | None:
    """The paper's final CD and TP for top-k (k = n is no truncation), or None."""
    ref = paper_reference("movielens", "k", None if k >= n else k)
    if ref is not None:
        return {"CD": ref["CD"], "TP": ref["TP"]}
    return EXTRA_PAPER.get(k)


def tp_drift(frame: pd.DataFrame, k: int, window: int = WINDOW) -> float | None:
    """Mean over seeds of TP at the last logged step minus TP ``window`` steps earlier (None if not logged)."""
    rows = frame[frame["k"].fillna(k) == k] if frame["k"].isna().any() else frame[frame["k"] == k]
    last = rows[STEP].max()
    before = rows[STEP][rows[STEP] <= last - window].max()
    if pd.isna(before):
        return None
    at = rows.groupby(STEP)["TP"].mean()
    return float(at[last] - at[before])


def run_table(run_dir: Path) -> str:
    """The markdown block of one run folder."""
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    if summary.get("sweep_keys") != ["k"] or "geometry" not in summary:
        raise RectestError(f"{run_dir}: expected a finished top-k sweep over policy.k with a geometry block")
    frame = read_metrics(run_dir / METRICS_FILE, ["k"])
    geo, n = summary["geometry"], summary["geometry"]["n"]
    lines = [
        f"### {run_dir.name}: m = {geo['m']}, n = {n}, d = {geo['d']}, transform `{geo['transform'] or 'none'}`",
        "",
        "| k | CD | TP | paper CD / TP | creators / users on the majority side | radius | "
        "closed-form CD / RR / RD | measured RR / RD | TP change, last 100 steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    t0 = next((r for r in geo.get("t0", []) if _k(r["params"]["k"], n) >= n), None)
    if t0 is not None:
        cells = " / ".join(format_number(t0["measured"][m], 3) for m in ("CD", "TP", "RR", "RD"))
        paper = " / ".join(format_number(PAPER_T0[m], 3) for m in ("CD", "TP", "RR", "RD"))
        lines.append(f"| t = 0, k = n: CD / TP / RR / RD | {cells} | | {paper} | | | | | |")
    for g in summary["groups"]:
        k = _k(g["params"]["k"], n)
        ref = paper_cell(k, n)
        p = g.get("poles", {})
        pred = p.get("predicted")
        closed = (
            "-" if pred is None else " / ".join(format_number(pred[m]["mean"], 2) for m in ("CD", "RR", "RD"))
        )
        drift = tp_drift(frame, k)
        lines.append(
            "| "
            + " | ".join(
                [
                    "n" if k >= n else str(k),
                    format_mean_stderr(g["final"]["CD"], 3),
                    format_mean_stderr(g["final"]["TP"], 3),
                    "-" if ref is None else f"{ref['CD']:.2f} / {ref['TP']:.2f}",
                    f"{_mean(p, 'creators_plus')} / {_mean(p, 'users_plus')}",
                    _mean(p, "radius"),
                    closed,
                    f"{format_number(g['final']['RR']['mean'], 2)} / {format_number(g['final']['RD']['mean'], 2)}",
                    "-" if drift is None else f"{drift:+.3f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _k(value: Any, n: int) -> int:
    """A swept k as a number: null (no truncation) is n."""
    return n if value is None else int(value)


def _mean(poles: Mapping[str, Any], key: str) -> str:
    value = (poles.get(key) or {}).get("mean")
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format_number(value, 2)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rectest.report.fidelity", description=__doc__.split("\n")[0]
    )
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders of top-k sweeps")
    args = parser.parse_args(argv)
    try:
        print("\n\n".join(run_table(run) for run in args.runs))
    except (RectestError, OSError, KeyError, ValueError) as err:
        print(f"rectest: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
