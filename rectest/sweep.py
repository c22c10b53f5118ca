"""Expand a config's swept values into simulation replicas.

Any of the sweepable keys may hold a list. The replicas are the Cartesian product of every list, times the
seeds (``sim.seeds``), so one batched simulation runs the whole sweep. Replica order: parameters vary
slowest, seeds fastest.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from rectest.errors import ConfigError

# short name (metrics.csv column) -> config path
SWEEPABLE: dict[str, str] = {
    "beta": "policy.beta",
    "k": "policy.k",
    "tau": "policy.tau",
    "eps": "policy.eps",
    "rho": "policy.rho",
    "mmr_lambda": "policy.mmr_lambda",
    "eta_u": "dynamics.eta_u",
    "eta_c": "dynamics.eta_c",
    "fixed_dims": "dynamics.fixed_dims",
    "retrain_every": "sim.retrain_every",
}


@dataclass(frozen=True)
class Replica:
    """One member of the batched simulation: a seed and one value of every sweepable key."""

    seed: int
    params: dict[str, Any]


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in {"inf", "+inf", ".inf", "+.inf", "infinity"}:
        return math.inf
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{SWEEPABLE[name]}={value!r}: expected a number") from None


def _normalise(name: str, value: Any, n_creators: int) -> Any:
    """Turn one config value into the engine's type (``n`` for k means the number of creators)."""
    if value is None:
        return None
    if name == "k":
        if isinstance(value, str) and value.strip().lower() == "n":
            return n_creators
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"policy.k={value!r}: expected a whole number or 'n'")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"policy.k={value!r}: expected a whole number or 'n'") from None
    if name in {"fixed_dims", "retrain_every"}:
        if isinstance(value, bool) or not float(_as_float(name, value)).is_integer():
            raise ConfigError(f"{SWEEPABLE[name]}={value!r}: expected a whole number")
        return int(value)
    return _as_float(name, value)


def swept_values(cfg: DictConfig, n_creators: int) -> dict[str, list[Any]]:
    """Every sweepable key's values (a one-element list when not swept), normalised."""
    values: dict[str, list[Any]] = {}
    for name, path in SWEEPABLE.items():
        raw = OmegaConf.select(cfg, path)
        items = list(raw) if isinstance(raw, ListConfig | list | tuple) else [raw]
        if not items:
            raise ConfigError(f"{path}=[]: a sweep needs at least one value")
        values[name] = [_normalise(name, v, n_creators) for v in items]
    return values


def sweep_keys(values: dict[str, list[Any]]) -> list[str]:
    """The keys that really vary (more than one value)."""
    return [name for name, vals in values.items() if len(vals) > 1]


def expand(values: dict[str, list[Any]], seeds: Sequence[int]) -> list[Replica]:
    """The replicas: the product of all values times the seeds (seeds vary fastest)."""
    if not seeds:
        raise ConfigError("sim.seeds=[]: expected at least one seed")
    repeated = sorted({int(s) for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ConfigError(
            f"sim.seeds={list(seeds)}: seed(s) {repeated} repeated; a repeated seed runs the same trajectory "
            "twice and understates the spread across seeds (expected distinct seeds)"
        )
    names = list(values)
    replicas = []
    for combo in itertools.product(*(values[n] for n in names)):
        for seed in seeds:
            replicas.append(Replica(seed=int(seed), params=dict(zip(names, combo, strict=True))))
    return replicas
