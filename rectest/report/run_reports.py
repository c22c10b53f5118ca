"""Write every end-of-run report of a run folder from its metrics frame in one call.

``summary.json``, ``table.md`` (with the authors' numbers when the setting and the single sweep key have
them) and ``figures/measures.png`` (plus one PNG per extra measure present: UD, clusters, polarized); for a
run of several grids (``sim.grids``), their diversity frontier (``frontier.md``, ``figures/frontier.png``),
or, when each grid is named after the variable it varies (``eta_u``, ``eta_c``, ``beta``), the time to
polarization (``convergence.md``, ``figures/convergence.png``).
The pipeline calls :func:`write_run_reports` once at the end, then prints :func:`console_summary`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rectest.errors import DataError
from rectest.report.geometry import attach_poles
from rectest.report.layout import FIGURES_DIR, SUMMARY_FILE, TABLE_FILE
from rectest.report.paper import paper_reference
from rectest.report.summary import summarize, write_summary
from rectest.report.tables import write_table
from rectest.report.values import EXITS, FAMILY, MEASURES, PAPER_MEASURES

VARIABLES = ("eta_u", "eta_c", "beta", "m", "n", "d")  # grids named so are a time-to-polarization design

MEASURES_FIGURE = "measures.png"
log = logging.getLogger("rectest")


def paper_rows(summary: dict[str, Any], setting: str | None) -> list[dict[str, Any]] | None:
    """The authors' rows for the summary's settings, or None.

    Only a sweep over exactly one key is matched: with several keys one reference value could not vouch
    for the others. Settings the authors did not report are left out.
    """
    keys = summary["sweep_keys"]
    if setting is None or len(keys) != 1:
        return None
    rows = [paper_reference(setting, keys[0], g["params"][keys[0]]) for g in summary["groups"]]
    found = [r for r in rows if r is not None]
    return found or None


def write_run_reports(
    frame: pd.DataFrame,
    sweep_keys: Sequence[str],
    run_dir: Path,
    title: str,
    setting: str | None = None,
    figures: bool = True,
    extra: dict[str, Any] | None = None,
    poles: Sequence[dict[str, Any]] | None = None,
    write_summary_file: bool = True,
) -> dict[str, Any]:
    """Write summary.json, table.md and (optionally) the figures under ``run_dir``.

    Args:
        frame: the long-format metrics (e.g. :func:`rectest.report.metrics_log.read_metrics` of metrics.csv).
        sweep_keys: the swept columns.
        run_dir: the run folder (must exist).
        title: heading of the table and the figures.
        setting: ``"synthetic"`` or a MovieLens release name to add the authors' numbers; None for none.
        figures: whether to draw the PNGs (matplotlib is imported only then).
        extra: entries added to the summary before it is written (e.g. ``geometry``, ``theorem``).
        poles: one record per replica index (:func:`rectest.report.geometry.attach_poles`).
        write_summary_file: write summary.json here; False lets the caller write it last (it marks a
            finished run, so it should appear only once every other output is in place).

    Returns:
        The summary dict (as written to summary.json).
    """
    run_dir = Path(run_dir)
    summary = summarize(frame, sweep_keys)
    summary.update(extra or {})
    if poles is not None:
        attach_poles(summary, poles)
    if write_summary_file:
        write_summary(summary, run_dir / SUMMARY_FILE)
    write_table(summary, run_dir / TABLE_FILE, title, paper_rows(summary, setting))
    families = {r["params"].get(FAMILY) for r in summary["replicas"]} if FAMILY in sweep_keys else set()
    # (both reports are also commands, so they are imported late)
    if families and families <= set(VARIABLES):  # one grid per variable: the time to polarization
        from rectest.report.convergence import write_convergence

        try:
            write_convergence([summary], run_dir, title, figures)
        except DataError as err:  # e.g. no variable took two values: the run's other outputs still stand
            log.warning("no convergence report: %s", err)
    elif families:  # several policy families: their diversity frontier
        from rectest.report.frontier import write_frontier

        write_frontier(summary, run_dir, title, figures)
    if figures:
        from rectest.report.figures import plot_measure, plot_measures

        fig_dir = run_dir / FIGURES_DIR
        plot_measures(frame, sweep_keys, fig_dir / MEASURES_FIGURE, title)
        for measure in (m for m in (*MEASURES, EXITS) if m not in PAPER_MEASURES and m in frame.columns):
            plot_measure(frame, sweep_keys, measure, fig_dir / f"{measure}.png", f"{title}: {measure}")
    return summary
