"""A short aligned text table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rectest.report.summary import last_step
from rectest.report.values import PAPER_MEASURES, format_mean_stderr, format_number, format_value

DIGITS = 3


def polarized_cell(group: Mapping[str, Any]) -> str:
    """``n/seeds`` polarized, with ``@mean first step`` when any did (``-`` without the measure)."""
    pol = group.get("polarized")
    if not pol:
        return "-"
    cell = f"{pol['n_polarized']}/{group['n_seeds']}"
    first = (pol.get("first_step") or {}).get("mean")
    return cell if first is None else f"{cell} @{format_number(first, 0)}"


def console_summary(summary: Mapping[str, Any], sweep_keys: Sequence[str]) -> str:
    """An aligned plain-text table: one line per swept setting.

    Columns: the swept values, the number of seeds, final CD/RD/RR/TP as ``mean ± stderr``, and
    ``polarized`` as ``n/seeds @mean first step``.

    Args:
        summary: the dict of :func:`rectest.report.summary.summarize`.
        sweep_keys: the swept columns to show (usually ``summary["sweep_keys"]``).

    Returns:
        The table text, lines joined by newlines, ending without a newline.
    """
    header = [*sweep_keys, "seeds", *PAPER_MEASURES, "polarized"]
    rows = [
        [
            *(format_value(group["params"].get(k)) for k in sweep_keys),
            str(group["n_seeds"]),
            *(format_mean_stderr(group["final"].get(m), DIGITS) for m in PAPER_MEASURES),
            polarized_cell(group),
        ]
        for group in summary["groups"]
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    n_keys = len(sweep_keys)

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i < n_keys else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    last = format_value(last_step(summary))
    title = f"final measures at step {last} (mean ± stderr over seeds)"
    return "\n".join([title, line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def timings_line(timings: Mapping[str, Any]) -> str:
    """One line with the wall time of each stage and the simulation's speed, to plan bigger runs."""
    parts = [
        f"{name} {timings[key]:.1f} s"
        for name, key in (
            ("load", "load_s"),
            ("train", "train_s"),
            ("simulate", "simulate_s"),
            ("report", "report_s"),
        )
        if timings.get(key) is not None
    ]
    speed = timings.get("steps_per_second")
    if speed is not None:
        parts.append(f"{speed:.2f} steps/s")
    return "timings: " + ", ".join(parts)
