"""Split a long-format metrics frame by swept setting and aggregate each measure across seeds per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rectest.report.values import REPLICA, STEP, normalize_value, setting_key


def setting_groups(
    frame: pd.DataFrame, sweep_keys: Sequence[str]
) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The frame's rows per swept setting, settings in the order of their first replica.

    Args:
        frame: long-format metrics (``step``, ``replica``, the sweep keys, measures).
        sweep_keys: the swept columns; empty gives one group with all rows.

    Returns:
        ``[(params, rows), ...]`` where ``params`` is ``{key: value}`` (None for NaN, ints when integral).
    """
    keys = list(sweep_keys)
    order = frame.sort_values([REPLICA, STEP], kind="stable") if REPLICA in frame.columns else frame
    labels = (
        [setting_key(vals) for vals in order[keys].itertuples(index=False, name=None)]
        if keys
        else [()] * len(order)
    )
    codes: dict[tuple[Any, ...], int] = {}
    ids = np.array([codes.setdefault(lab, len(codes)) for lab in labels], dtype=np.int64)
    out = []
    for key_values, code in codes.items():
        rows = order.loc[order.index[ids == code]]
        out.append(({k: normalize_value(v) for k, v in zip(keys, key_values, strict=True)}, rows))
    return out


def step_stats(rows: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Per logged step, the measure's mean, stderr, min and max across the replicas in ``rows``.

    Args:
        rows: the rows of one setting (one per replica and step).
        measure: the column to aggregate.

    Returns:
        Frame indexed by step (ascending) with columns ``mean, stderr, min, max, n``; ``stderr`` is
        ``std(ddof=1)/sqrt(n)`` and 0 where ``n = 1``.
    """
    grouped = rows.astype({measure: float}).groupby(STEP, sort=True)[measure]
    stats = grouped.agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"})
    stats["stderr"] = (stats["std"] / np.sqrt(stats["n"])).fillna(0.0)
    return stats[["mean", "stderr", "min", "max", "n"]]
