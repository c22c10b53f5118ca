"""Turn a simulation's history tensors into the long-format metrics frame every report reads.

The long format has one row per (logged step, replica), ordered by step then replica, with columns
``step, replica, seed, <sweep keys...>, <measures...>``. It is what ``metrics.csv`` holds, and it is the
notebook API's way to get a DataFrame from a simulation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from rectest.report.values import MEASURES, REPLICA, SEED, STEP, normalize_value


def sweep_keys_of(params: Sequence[Mapping[str, Any]]) -> list[str]:
    """The swept parameter names in first-seen order over all replicas' parameter dicts."""
    keys: list[str] = []
    for p in params:
        keys.extend(k for k in p if k not in keys)
    return keys


def _measure_names(history: Mapping[str, torch.Tensor], shape: tuple[int, int]) -> list[str]:
    """The canonical measures present, then any other entry of shape (L, R), in the history's order."""
    known = [m for m in MEASURES if m in history]
    extra = [
        k
        for k in history
        if k != STEP and k not in MEASURES and tuple(torch.as_tensor(history[k]).shape) == shape
    ]
    return known + extra


def history_frame(
    history: Mapping[str, torch.Tensor], params: Sequence[Mapping[str, Any]], seeds: Sequence[int]
) -> pd.DataFrame:
    """The long-format metrics frame of one batched simulation.

    Args:
        history: ``"step"``: (L,) logged step numbers; the measures ``CD, RD, RR, TP, UD, clusters,
            polarized`` (those present): (L, R) one value per logged step and replica. Other entries become
            columns too when they are (L, R); entries of any other shape are left out.
        params: ``params[r]`` is ``{sweep_key: value}`` for replica ``r`` (values may be None or inf).
        seeds: ``seeds[r]`` is the random seed of replica ``r``.

    Returns:
        (L * R) rows ordered by step then replica; columns ``step, replica, seed``, the sweep keys in
        first-seen order, then the measures (canonical ones first). Swept values keep their Python form
        (object column) so that ``None`` and ``inf`` survive.

    Raises:
        ValueError: when the shapes disagree (a programming error, not a user error).
    """
    if STEP not in history:
        raise ValueError(f"history needs a {STEP!r} entry, got keys {sorted(history)}")
    steps = torch.as_tensor(history[STEP]).reshape(-1).cpu()  # (L,)
    n_steps, n_replicas = steps.numel(), len(params)
    if len(seeds) != n_replicas:
        raise ValueError(f"{len(seeds)} seeds for {n_replicas} replicas")
    columns: dict[str, Any] = {
        STEP: steps.repeat_interleave(n_replicas).tolist(),
        REPLICA: list(range(n_replicas)) * n_steps,
        SEED: [int(s) for s in seeds] * n_steps,
    }
    for key in sweep_keys_of(params):
        per_replica = [normalize_value(p.get(key)) for p in params]
        columns[key] = pd.Series(per_replica * n_steps, dtype=object)
    for name in _measure_names(history, (n_steps, n_replicas)):
        series = torch.as_tensor(history[name]).detach().cpu()  # (L, R)
        if series.shape != (n_steps, n_replicas):
            raise ValueError(
                f"history[{name!r}] has shape {tuple(series.shape)}, expected ({n_steps}, {n_replicas})"
            )
        columns[name] = series.to(torch.float64).reshape(-1).tolist()  # row-major: step then replica
    return pd.DataFrame(columns)
