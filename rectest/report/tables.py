"""``table.md``: the paper-style table of a sweep, with the authors' numbers next to ours.

One row per swept setting (the groups of ``summary.json``, in their order); columns: the swept values,
the number of seeds, the final CD, RD, RR, TP as ``mean ± stderr`` over seeds, how many seeds polarized,
and, when reference rows are given, a ``paper`` column group with the authors' values for the same
setting (``~`` marks values read approximately from their figures; ``-`` where they report none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rectest.files import atomic_write_text
from rectest.report.console import polarized_cell
from rectest.report.geometry import GEOMETRY, geometry_lines, poles_lines
from rectest.report.summary import last_step
from rectest.report.values import (
    PAPER_MEASURES,
    format_mean_stderr,
    format_number,
    format_value,
    normalize_value,
)

SEEDS_COLUMN = "seeds"
POLARIZED_COLUMN = "polarized"
PAPER_PREFIX = "paper "
DIGITS = 3


def _same(a: Any, b: Any) -> bool:
    a, b = normalize_value(a), normalize_value(b)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return a == b or (math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, abs_tol=1e-9))
    return a == b


def match_paper_row(
    params: Mapping[str, Any], paper: Sequence[Mapping[str, Any]] | None
) -> Mapping[str, Any] | None:
    """The first reference row whose swept values (the keys it shares with ``params``) all agree."""
    for row in paper or ():
        shared = [k for k in params if k in row]
        if shared and all(_same(params[k], row[k]) for k in shared):
            return row
    return None


def _paper_cell(row: Mapping[str, Any] | None, measure: str) -> str:
    if row is None or row.get(measure) is None:
        return "-"
    text = (row.get("text") or {}).get(measure)
    if text:
        return str(text)
    approx = "~" if measure in (row.get("approximate") or ()) else ""
    return approx + format_number(row[measure], 2)


def table_rows(
    summary: Mapping[str, Any], paper: Sequence[Mapping[str, Any]] | None = None
) -> tuple[list[str], list[list[str]]]:
    """The table's header and cell text, one row per group of ``summary``."""
    keys = list(summary["sweep_keys"])
    with_polarized = any("polarized" in g for g in summary["groups"])
    header = [*keys, SEEDS_COLUMN, *PAPER_MEASURES]
    header += [POLARIZED_COLUMN] if with_polarized else []
    header += [PAPER_PREFIX + m for m in PAPER_MEASURES] if paper else []
    rows = []
    for group in summary["groups"]:
        cells = [format_value(group["params"][k]) for k in keys]
        cells.append(str(group["n_seeds"]))
        cells += [format_mean_stderr(group["final"].get(m), DIGITS) for m in PAPER_MEASURES]
        if with_polarized:
            cells.append(polarized_cell(group))
        if paper:
            ref = match_paper_row(group["params"], paper)
            cells += [_paper_cell(ref, m) for m in PAPER_MEASURES]
        rows.append(cells)
    return header, rows


def render_table(
    summary: Mapping[str, Any], title: str, paper: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """The markdown text of :func:`write_table`."""
    header, rows = table_rows(summary, paper)
    n_keys = len(summary["sweep_keys"])
    align = ["---"] * n_keys + ["---:"] * (len(header) - n_keys)
    lines = [f"# {title}", ""]
    lines += ["| " + " | ".join(cells) + " |" for cells in (header, align, *rows)]
    note = (
        f"Final values at step {format_value(last_step(summary))}: mean ± standard error over seeds "
        f"(no ± with one seed). `{POLARIZED_COLUMN}`: seeds whose state became r-polarized, @ the mean "
        "first polarized step among them."
    )
    lines += ["", note]
    if paper:
        where = {
            "synthetic": "the i.i.d. uniform world (d = 10, n = 50, m = 100), the setting of `sim.init=truth`",
            "movielens": "MovieLens-20M with a 16-dimensional two-tower, 138,493 users and the 2,000 most-rated "
            "movies; this run's data, model and sizes may differ (docs/fidelity.md explains the gaps)",
        }.get(str(paper[0].get("setting")), "the authors' setting")
        lines.append(
            "`paper` columns: Lin et al., NeurIPS 2024, final values read from the authors' figures "
            f"(`~` approximate; `-` not reported), in {where}."
        )
    if summary.get(GEOMETRY):
        lines += ["", *geometry_lines(summary[GEOMETRY])]
    pole_lines = poles_lines(summary)
    if pole_lines:
        lines += ["", *pole_lines]
    return "\n".join(lines) + "\n"


def write_table(
    summary: Mapping[str, Any], path: Path, title: str, paper: Sequence[Mapping[str, Any]] | None = None
) -> Path:
    """Write ``table.md`` atomically.

    Args:
        summary: the dict of :func:`rectest.report.summary.summarize` (or read back from summary.json).
        path: the markdown file to write.
        title: the table's heading.
        paper: reference rows (e.g. from :func:`rectest.report.paper.paper_reference`), each holding the
            swept values under the sweep keys' names plus ``CD, RD, RR, TP`` and optionally ``text`` and
            ``approximate``; matched to our rows by the swept values. None: no paper columns.

    Returns:
        ``path``.
    """
    return atomic_write_text(Path(path), render_table(summary, title, paper))
