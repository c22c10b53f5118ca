"""Check simulation settings before any work starts, and report the theorem's conditions.

Every bad value ends with one :class:`~rectest.errors.ConfigError` naming the key and the expected range.
The polarization theorem (spec section 6) is reported, never enforced.
"""

from __future__ import annotations

import math
from typing import Any

from rectest.errors import ConfigError
from rectest.sim.geometry import TRANSFORMS
from rectest.sweep import SWEEPABLE

IMPACT_FUNCTIONS = ("sign", "identity", "tanh")
CREATOR_CHOICES = ("most_rated", "random", "all")


def _check(name: str, values: list[Any], ok, expected: str) -> None:
    for v in values:
        if v is None:
            continue
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(f"{SWEEPABLE[name]}=nan: expected {expected}")
        if not ok(v):
            raise ConfigError(f"{SWEEPABLE[name]}={v}: expected {expected}")


def validate_values(values: dict[str, list[Any]], n_creators: int, d: int) -> None:
    """Refuse out-of-range policy and dynamics values.

    Args:
        values: normalised swept values (see :func:`rectest.sweep.swept_values`).
        n_creators: number of creators n in the simulation.
        d: dimension of the simulated vectors.

    Raises:
        ConfigError: naming the first offending key and value.
    """
    _check("beta", values["beta"], lambda v: v >= 0, "beta >= 0 (inf allowed)")
    _check("k", values["k"], lambda v: 1 <= v <= n_creators, f"1 <= k <= n = {n_creators} (or 'n', or null)")
    _check("tau", values["tau"], lambda v: -1.0 <= v <= 1.0, "tau in [-1, 1] (or null)")
    _check("eps", values["eps"], lambda v: 0.0 <= v <= 1.0, "eps in [0, 1]")
    _check("rho", values["rho"], lambda v: v >= 0 and math.isfinite(v), "rho >= 0")
    _check("mmr_lambda", values["mmr_lambda"], lambda v: 0.0 <= v <= 1.0, "mmr_lambda in [0, 1] (or null)")
    _check("eta_u", values["eta_u"], lambda v: 0.0 < v <= 1.0, "eta_u in (0, 1]")
    _check("eta_c", values["eta_c"], lambda v: 0.0 < v <= 1.0, "eta_c in (0, 1]")
    _check("fixed_dims", values["fixed_dims"], lambda v: 0 <= v < d, f"0 <= fixed_dims < d = {d}")
    _check("retrain_every", values["retrain_every"], lambda v: v >= 0, "retrain_every >= 0 (0 = never)")
    if any(math.isinf(b) for b in values["beta"]) and any(r > 0 for r in values["rho"]):
        raise ConfigError(
            "policy.rho > 0 with policy.beta=inf: the diversity-aware objective needs a finite beta"
        )
    if any(v is not None for v in values["mmr_lambda"]) and all(v is None for v in values["k"]):
        raise ConfigError(
            "policy.mmr_lambda is set but policy.k is null: MMR re-ranking needs a list length k"
        )


def validate_choices(
    f: str,
    g: str,
    init: str,
    recommender: str,
    device: str,
    dtype: str,
    creators: str = "most_rated",
    transform: str = "none",
) -> None:
    """Refuse unknown option names for the plain string keys."""
    for key, value, allowed in (
        ("sim.creators", creators, CREATOR_CHOICES),
        ("sim.transform", transform, TRANSFORMS),
        ("dynamics.f", f, IMPACT_FUNCTIONS),
        ("dynamics.g", g, IMPACT_FUNCTIONS),
        ("sim.init", "run:" if init.startswith("run:") else init, ("embeddings", "truth", "run:")),
        ("sim.recommender", recommender, ("oracle", "learned")),
        ("sim.device", device, ("auto", "cpu", "cuda")),
        ("sim.dtype", dtype, ("float32", "float64")),
    ):
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(allowed)}")


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
