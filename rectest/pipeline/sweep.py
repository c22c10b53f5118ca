"""Expand a run specification's swept values into replicas and the engine's own policy and dynamics.

Any swept key may hold several values. The replicas are the Cartesian product of every key's values,
times the seeds (``sim.seeds``), so one batched simulation runs the whole sweep. Replica order: parameters
vary slowest, seeds fastest. The values are range-checked once, by :class:`~rectest.sim.Policy` and
:class:`~rectest.sim.Dynamics` (their messages name the config key).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from rectest.errors import ConfigError
from rectest.pipeline.spec import ALL_CREATORS, RunSpec
from rectest.sim import Dynamics, Policy

POLICY_KEYS = ("beta", "k", "tau", "eps", "rho", "mmr_lambda")
DYNAMICS_KEYS = ("eta_u", "eta_c", "fixed_dims")
SWEEPABLE = (*POLICY_KEYS, *DYNAMICS_KEYS, "retrain_every")
"""The swept keys, in replica order (their short names are metrics.csv columns)."""


@dataclass(frozen=True)
class Replica:
    """One member of the batched simulation: a seed and one value of every swept key (labels, reports)."""

    seed: int
    params: dict[str, Any]


@dataclass
class Sweep:
    """The replicas of a run and the engine objects that carry their values."""

    replicas: list[Replica]
    keys: list[str]  # the keys that really vary (more than one value)
    policy: Policy
    dynamics: Dynamics

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.replicas]

    def subset(self, replicas: list[Replica]) -> Sweep:
        """The same sweep over other replicas (e.g. one per setting), with the same impact functions."""
        dyn = self.dynamics
        policy, dynamics = engine_objects(replicas, dyn.f, dyn.g, dyn.tanh_slope)
        return Sweep(replicas, self.keys, policy, dynamics)


def grid(spec: RunSpec, n_creators: int) -> dict[str, tuple]:
    """Every swept key's values (``k = n`` resolved to the number of creators)."""
    values = {key: getattr(spec.policy, key) for key in POLICY_KEYS}
    values.update({key: getattr(spec.dynamics, key) for key in DYNAMICS_KEYS})
    values["retrain_every"] = spec.sim.retrain_every
    values["k"] = tuple(n_creators if k == ALL_CREATORS else k for k in values["k"])
    return values


def expand(spec: RunSpec, n_creators: int, d: int) -> Sweep:
    """The replicas of ``spec`` and the checked engine objects for ``n_creators`` creators in dimension ``d``.

    Raises:
        ConfigError: a value out of range (the engine's message, naming the config key).
    """
    values = grid(spec, n_creators)
    replicas = [
        Replica(seed=seed, params=dict(zip(values, combo, strict=True)))
        for combo in itertools.product(*values.values())
        for seed in spec.sim.seeds
    ]
    try:
        policy, dynamics = engine_objects(
            replicas, spec.dynamics.f.value, spec.dynamics.g.value, spec.dynamics.tanh_slope
        )
        policy.check(n_creators)
        dynamics.check(d)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    keys = [key for key, vals in values.items() if len(vals) > 1]
    return Sweep(replicas, keys, policy, dynamics)


def engine_objects(replicas: list[Replica], f: str, g: str, tanh_slope: float) -> tuple[Policy, Dynamics]:
    """The engine's policy and dynamics with one value per replica (checked on construction).

    Raises:
        ValueError: a value out of range, naming its config key.
    """
    per = {key: [r.params[key] for r in replicas] for key in (*POLICY_KEYS, *DYNAMICS_KEYS)}
    policy = Policy(**{key: per[key] for key in POLICY_KEYS})
    dynamics = Dynamics(
        **{key: per[key] for key in DYNAMICS_KEYS},
        f=f,
        g=g,
        tanh_slope=tanh_slope,
    )
    return policy, dynamics


def theorem_conditions(params: dict[str, Any], n_creators: int) -> dict[str, bool]:
    """Whether one replica's settings satisfy the polarization theorem's conditions (spec section 6).

    The theorem (authors' talk): if every p_ij > p0 > 0 and 0 < eta_u < eta_c / 2 < 1/4, the dynamics
    polarize from any initial state.

    Returns:
        ``{"positive_probabilities": ..., "rate_condition": ..., "theorem_applies": ...}``.
    """
    truncated = (params["k"] is not None and params["k"] < n_creators) or params["tau"] is not None
    finite_softmax = math.isfinite(params["beta"]) and params["mmr_lambda"] is None
    positive = params["eps"] > 0 or (finite_softmax and not truncated)
    rate = 0 < params["eta_u"] < params["eta_c"] / 2 < 0.25
    return {"positive_probabilities": positive, "rate_condition": rate, "theorem_applies": positive and rate}
