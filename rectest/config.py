"""Dataclass schemas for the plain (non-``_target_``) config nodes.

Each YAML option of the ``policy``, ``dynamics``, ``sim`` and ``logger`` groups starts from one of these
schemas (``defaults: [/schema_<group>@_here_, _self_]``), so a misspelt key is an error when the config is composed,
before any work starts. Swept parameters are typed ``Any`` because they accept a scalar or a list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class PolicyConfig:
    """One recommendation policy (spec section 3). Each value may be a list to sweep."""

    name: str = "softmax"
    beta: Any = 1.0  # sensitivity >= 0; `inf` recommends the argmax
    k: Any = None  # top-k truncation (null = off)
    tau: Any = None  # threshold truncation in [-1, 1] (null = off)
    eps: Any = 0.0  # uniform-traffic mixing weight in [0, 1]
    rho: Any = 0.0  # diversity-aware objective weight (>= 0)
    mmr_lambda: Any = None  # MMR re-ranking weight in [0, 1] (null = off; needs k)


@dataclass
class DynamicsConfig:
    """Update rules (spec section 2). eta_u, eta_c and fixed_dims may be lists to sweep."""

    eta_u: Any = 0.1
    eta_c: Any = 0.1
    f: str = "sign"  # user impact function: sign | identity | tanh
    g: str = "sign"  # creator impact function: sign | identity | tanh
    tanh_slope: float = 1.0
    fixed_dims: Any = 0


@dataclass
class SimConfig:
    """The simulation loop: horizon, replicas, device, who scores, checkpoints."""

    steps: int = 1000
    seeds: list[int] = field(default_factory=lambda: list(range(8)))
    log_every: int = 1
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "float32"  # float32 | float64
    init: str = "embeddings"  # embeddings | truth (synthetic world's true vectors)
    recommender: str = "oracle"  # oracle | learned
    retrain_every: Any = 0  # steps between retrains of the learned recommender (0 = never)
    feedback_noise: float = 0.0  # std of Gaussian noise added to logged feedback
    window: int = 100  # retrain on the interactions logged in the last `window` steps
    warm_start_epochs: int = 1
    n_creators: Any = 2000  # how many items become creators (all when fewer); null = all
    creators: str = "most_rated"  # most_rated | random | all: which items become creators
    transform: str = "none"  # none | center | whiten | whiten_each: geometry of the starting vectors
    n_users: Any = None  # a random sample of m users; null = all
    chunk_size: int = 8192  # users per chunk when scoring (bounds the m x n memory)
    checkpoint_every: int = 100  # steps between state checkpoints (0 = never)
    r_polarized: float = 0.05  # radius of the r-polarization flag
    threads: Any = (
        None  # CPU threads for torch; null = 1 for small problems (threads cost more than they gain)
    )


@dataclass
class LoggerConfig:
    """What the run writes besides metrics.csv, summary.json and table.md."""

    tensorboard: bool = True
    projector: bool = True  # embedding-projector snapshots at the first and last step
    figures: bool = True
    progress: bool = True  # live bars on a terminal, a plain line now and then otherwise; false = silent


SCHEMAS: dict[str, type] = {
    "policy": PolicyConfig,
    "dynamics": DynamicsConfig,
    "sim": SimConfig,
    "logger": LoggerConfig,
}
"""The plain config groups and their schemas."""


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    # stored outside the groups (``schema_<group>``), so ``--help`` lists only real options under each group
    for group, schema in SCHEMAS.items():
        cs.store(name=f"schema_{group}", node=schema)


register_configs()


def build(node: Any, what: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with user errors made plain.

    A :class:`~rectest.errors.RectestError` raised inside the target is re-raised as it is; a bad or
    misspelt argument in a ``_target_`` node becomes a :class:`~rectest.errors.ConfigError` naming the node.

    Args:
        node: the config node with a ``_target_``.
        what: the node's key for messages (``data``, ``model.net``, ``trainer``).
        **kwargs: values filled in at run time (``num_users=...``).
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from rectest.errors import ConfigError, RectestError

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, RectestError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        lines = [
            ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().startswith("full_key")
        ]
        raise ConfigError(f"{what}: {' '.join(lines) or type(err).__name__}") from None
