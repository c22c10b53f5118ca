"""Expand a run specification's swept values into replicas and the engine's own policy and dynamics.

Any swept key may hold several values. The replicas are the Cartesian product of every key's values,
times the seeds (``sim.seeds``), so one batched simulation runs the whole sweep. Replica order: parameters
vary slowest, seeds fastest.

``sim.grids`` makes the replicas a union of such products: each grid overrides some swept keys of the
base values (``policy``, ``dynamics``, ``sim.retrain_every``), e.g. ``[{name: softmax, beta: [1, 3]},
{name: topk, k: [1, 10]}]``, and grids follow one another in replica order. With more than one grid each
replica also carries its grid's name as the ``family`` parameter (a metrics.csv column). The values are range-checked once, by :class:`~rectest.sim.Policy` and
:class:`~rectest.sim.Dynamics` (their messages name the config key).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

from rectest.errors import ConfigError
from rectest.pipeline.spec import (
    ALL_CREATORS,
    DYNAMICS_KEYS,
    GRID_KEYS,
    GRID_NAME,
    POLICY_KEYS,
    Recommender,
    RunSpec,
)
from rectest.report.values import FAMILY
from rectest.sim import Dynamics, Policy
from rectest.sim.incentives import check_climbers

SWEEPABLE = GRID_KEYS
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


def grid(spec: RunSpec, n_creators: int, overrides: dict[str, Any] | None = None) -> dict[str, tuple]:
    """Every swept key's values (``k = n`` resolved to the number of creators).

    Args:
        spec: the run specification (its ``policy``, ``dynamics`` and ``sim.retrain_every`` are the base).
        n_creators: the number of creators.
        overrides: one grid of ``sim.grids``: swept keys by short name, parsed like the groups' own values.

    Raises:
        ConfigError: an override that does not parse (the message names the key).
    """
    policy, dynamics, sim = spec.policy, spec.dynamics, spec.sim
    if overrides:
        policy = replace(policy, **{k: v for k, v in overrides.items() if k in POLICY_KEYS})
        dynamics = replace(dynamics, **{k: v for k, v in overrides.items() if k in DYNAMICS_KEYS})
        if "retrain_every" in overrides:
            sim = replace(sim, retrain_every=overrides["retrain_every"])
    values = {key: getattr(policy, key) for key in POLICY_KEYS}
    values.update({key: getattr(dynamics, key) for key in DYNAMICS_KEYS})
    values["retrain_every"] = sim.retrain_every
    values["k"] = tuple(n_creators if k == ALL_CREATORS else k for k in values["k"])
    return values


def expand(spec: RunSpec, n_creators: int, d: int) -> Sweep:
    """The replicas of ``spec`` and the checked engine objects for ``n_creators`` creators in dimension ``d``.

    Raises:
        ConfigError: a value out of range (the engine's message, naming the config key).
    """
    grids = spec.sim.grids or [{}]
    replicas = []
    for i, overrides in enumerate(grids):
        name = str(overrides.get(GRID_NAME, i))
        try:
            values = grid(spec, n_creators, {k: v for k, v in overrides.items() if k != GRID_NAME})
        except ConfigError as err:
            raise ConfigError(f"sim.grids[{i}] ({name}): {err}") from None
        family = {FAMILY: name} if len(grids) > 1 else {}
        replicas += [
            Replica(seed=seed, params={**family, **dict(zip(values, combo, strict=True))})
            for combo in itertools.product(*values.values())
            for seed in spec.sim.seeds
        ]
    try:
        policy, dynamics = engine_objects(
            replicas, spec.dynamics.f.value, spec.dynamics.g.value, spec.dynamics.tanh_slope
        )
        policy.check(n_creators)
        dynamics.check(d)
        check_climbers(policy, dynamics.rules())
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if spec.sim.recommender is Recommender.learned and any(r != "audience" for r in dynamics.rules()):
        raise ConfigError(
            "dynamics.creator_rule=exposure / engagement with sim.recommender=learned: the creators' gradient "
            "assumes the platform scores with the true vectors (expected sim.recommender=oracle)"
        )
    keys = [key for key in (FAMILY, *SWEEPABLE) if len({r.params.get(key) for r in replicas}) > 1]
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
    polarize from any initial state. It is about the paper's creator rule (``audience``) only.

    Returns:
        ``{"positive_probabilities": ..., "rate_condition": ..., "theorem_applies": ...}``.
    """
    truncated = (params["k"] is not None and params["k"] < n_creators) or params["tau"] is not None
    finite_softmax = math.isfinite(params["beta"]) and params["mmr_lambda"] is None
    positive = params["eps"] > 0 or (finite_softmax and not truncated)
    eta_c = params["eta_c"] / (1 + params.get("creator_cost", 0.0))  # the step the creators take
    rate = 0 < params["eta_u"] < eta_c / 2 < 0.25 and params.get("creator_rule", "audience") == "audience"
    return {"positive_probabilities": positive, "rate_condition": rate, "theorem_applies": positive and rate}
