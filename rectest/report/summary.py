"""``summary.json``: final and time-averaged measures per replica, and their mean and stderr per setting.

Layout (every value JSON-safe: inf -> ``"inf"``, NaN -> ``null``)::

    {
      "sweep_keys": ["k"],
      "measures": ["CD", "RD", "RR", "TP", "UD", "clusters", "polarized"],
      "steps": {"first": 0, "last": 1000, "logged": 1001},
      "replicas": [
        {"replica": 0, "seed": 0, "params": {"k": 1}, "final_step": 1000,
         "final": {"CD": 1.39, ...}, "time_avg": {"CD": 1.39, ...}, "first_polarized_step": null}, ...],
      "groups": [
        {"params": {"k": 1}, "label": "k=1", "n_seeds": 8, "seeds": [0, ..., 7],
         "final": {"CD": {"mean": 1.39, "stderr": 0.002}, ...}, "time_avg": {...},
         "polarized": {"n_polarized": 0, "fraction": 0.0,
                       "first_step": {"mean": null, "stderr": null}}}, ...]
    }

Definitions:

- *final*: the value at the replica's last logged step.
- *time_avg*: the mean over the replica's logged steps (every ``log_every`` steps, step 0 included when
  logged); for ``polarized`` it is the fraction of logged steps at which the state was polarized.
- *first_polarized_step*: the first logged step with ``polarized >= 0.5``, or null (never polarized).
- per setting (a group of replicas with the same swept values, in first-seen order): ``mean`` over seeds
  and ``stderr = std(ddof=1) / sqrt(n)``, null when ``n = 1``. ``polarized.first_step`` averages over the
  replicas that polarized only (``n_polarized`` of them).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rectest.errors import DataError
from rectest.files import atomic_write_text
from rectest.report.values import (
    MEASURES,
    PAPER_MEASURES,
    POLARIZED,
    REPLICA,
    SEED,
    STEP,
    json_safe,
    normalize_value,
    setting_key,
    setting_label,
)


def mean_stderr(values: Sequence[float]) -> dict[str, float | None]:
    """``{"mean", "stderr"}`` of finite values: stderr = std(ddof=1)/sqrt(n), None when n < 2.

    NaN and None are ignored; with no value left both are None.
    """
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return {"mean": None, "stderr": None}
    mean = math.fsum(xs) / n
    if n < 2:
        return {"mean": mean, "stderr": None}
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    return {"mean": mean, "stderr": math.sqrt(var / n)}


def _check_columns(frame: pd.DataFrame, sweep_keys: Sequence[str]) -> list[str]:
    required = [STEP, SEED, REPLICA, *sweep_keys, *PAPER_MEASURES]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"metrics frame lacks columns {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise DataError("metrics frame has no rows: nothing was logged")
    return [m for m in MEASURES if m in frame.columns]


def _replica_record(rows: pd.DataFrame, sweep_keys: Sequence[str], measures: list[str]) -> dict[str, Any]:
    rows = rows.sort_values(STEP, kind="stable")
    last = rows.iloc[-1]
    first_polarized = None
    if POLARIZED in rows.columns:
        hit = rows.loc[rows[POLARIZED].astype(float) >= 0.5, STEP]
        first_polarized = normalize_value(hit.iloc[0]) if len(hit) else None
    return {
        "replica": int(last[REPLICA]),
        "seed": int(last[SEED]),
        "params": {k: normalize_value(last[k]) for k in sweep_keys},
        "final_step": normalize_value(last[STEP]),
        "final": {m: normalize_value(float(last[m])) for m in measures},
        "time_avg": {m: normalize_value(float(rows[m].astype(float).mean())) for m in measures},
        "first_polarized_step": first_polarized,
    }


def _group_record(reps: list[dict[str, Any]], measures: list[str]) -> dict[str, Any]:
    firsts = [r["first_polarized_step"] for r in reps if r["first_polarized_step"] is not None]
    return {
        "params": reps[0]["params"],
        "label": setting_label(reps[0]["params"]),
        "n_seeds": len(reps),
        "seeds": [r["seed"] for r in reps],
        "final": {m: mean_stderr([r["final"][m] for r in reps]) for m in measures},
        "time_avg": {m: mean_stderr([r["time_avg"][m] for r in reps]) for m in measures},
        "polarized": {
            "n_polarized": len(firsts),
            "fraction": len(firsts) / len(reps),
            "first_step": mean_stderr(firsts),
        },
    }


def summarize(frame: pd.DataFrame, sweep_keys: Sequence[str]) -> dict[str, Any]:
    """Summarise a long-format metrics frame (see the module docstring for the layout).

    Args:
        frame: one row per (logged step, replica) with ``step, seed, replica``, the sweep keys and at
            least ``CD, RD, RR, TP`` (``UD, clusters, polarized`` are summarised when present).
        sweep_keys: the swept parameter columns (may be empty: one group of all replicas).

    Returns:
        A JSON-safe dict.

    Raises:
        DataError: a required column is missing or the frame is empty.
    """
    measures = _check_columns(frame, sweep_keys)
    replicas = [
        _replica_record(rows, sweep_keys, measures)
        for _, rows in frame.groupby(REPLICA, sort=True, dropna=False)
    ]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for rep in replicas:
        groups.setdefault(setting_key([rep["params"][k] for k in sweep_keys]), []).append(rep)
    steps = frame[STEP].astype(float)
    summary = {
        "sweep_keys": list(sweep_keys),
        "measures": measures,
        "steps": {
            "first": normalize_value(steps.min()),
            "last": normalize_value(steps.max()),
            "logged": int(steps.nunique()),
        },
        "replicas": replicas,
        "groups": [_group_record(reps, measures) for reps in groups.values()],
    }
    return json_safe(summary)


def last_step(summary: Mapping[str, Any]) -> Any:
    """The last logged step of a summary (``summary["steps"]["last"]``; a plain number is accepted too)."""
    steps = summary.get("steps")
    return steps.get("last") if isinstance(steps, Mapping) else steps


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    """Write ``summary`` as indented JSON atomically (temp file + ``os.replace``); return the path."""
    path = Path(path)
    text = json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text)
    return path


def read_summary(path: Path) -> dict[str, Any]:
    """Read a ``summary.json`` back (inf stays the string ``"inf"``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read the summary ({err})") from err


def report_command(write: Callable[[], Sequence[Path]]) -> int:
    """The end of a report command over finished runs: print the files ``write`` wrote and return 0, or on a
    :class:`DataError` (a missing or unreadable summary) print one ``error: ...`` line to stderr and return 2."""
    try:
        written = write()
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in written))
    return 0
