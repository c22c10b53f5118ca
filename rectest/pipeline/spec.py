"""The typed run specification: every setting of one run, parsed once.

The command line builds it from the Hydra config (:func:`rectest.pipeline.compose.build_spec`, the only
module besides the entry point that knows Hydra); notebooks and tests build it directly::

    spec = RunSpec(data=functools.partial(synthetic, num_users=100, num_items=50, dim=10),
                   policy=PolicySpec(name="topk", k=[1, 10]), sim=SimSpec(steps=100, seeds=[0, 1]))
    rectest.pipeline.run(spec, Path("outputs/mine"))

The same dataclasses are the schemas of the plain config groups (``policy``, ``dynamics``, ``sim``,
``logger`` and the plain keys of ``model``), so a misspelt key or an unknown choice fails when the config is
composed. A swept key holds one value or a list; ``__post_init__`` parses it into a tuple of numbers
(``inf`` for beta, ``n`` for k) and nothing else. The ranges of the policy and dynamics values are checked
in one place, by the engine's own :class:`~rectest.sim.Policy` and :class:`~rectest.sim.Dynamics`
(see :func:`rectest.pipeline.sweep.engine_objects`); the loop's own settings are checked here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from rectest.errors import ConfigError
from rectest.sim.churn import Churn
from rectest.sim.dynamics import CREATOR_RULES, IMPACT_NAMES
from rectest.sim.geometry import TRANSFORMS
from rectest.sim.measures import MEASURES

INF_WORDS = {"inf", "+inf", ".inf", "+.inf", "infinity"}
ALL_CREATORS = "n"  # policy.k=n: a list as long as the number of creators (no truncation)
AUTO = "auto"  # sim.shards=auto: one shard per torchrun process


class Choice(str, Enum):
    """A closed set of names; the member's name is its config value."""

    def __str__(self) -> str:
        return self.value


class Device(Choice):
    auto = "auto"  # CUDA when present
    cpu = "cpu"
    cuda = "cuda"


class DType(Choice):
    float32 = "float32"
    float64 = "float64"


class Sampler(Choice):
    rejection = "rejection"  # exact rejection sampling: softmax and threshold replicas, beta <= 3, n >= 256
    inverse_cdf = "inverse_cdf"  # every replica from its full row (the draws of earlier runs)


class Recommender(Choice):
    oracle = "oracle"  # recommends with the true vectors
    learned = "learned"  # recommends with the trained model's vectors, retrained on logged feedback


class CreatorChoice(Choice):
    most_rated = "most_rated"
    random = "random"
    all = "all"


# the engine's names, one definition: sim.transform, dynamics.f / dynamics.g and dynamics.creator_rule
Transform = Choice("Transform", [(name, name) for name in TRANSFORMS])
Impact = Choice("Impact", [(name, name) for name in IMPACT_NAMES])
CreatorRule = Choice("CreatorRule", [(name, name) for name in CREATOR_RULES])


FEEDBACKS = ("explicit", "implicit")


def _choice(kind: type[Choice], key: str, value: Any) -> Choice:
    """``value`` as a member of ``kind`` (a string from Python code, a member from the composed config)."""
    try:
        return value if isinstance(value, kind) else kind[str(value)]
    except KeyError:
        raise ConfigError(f"{key}={value!r}: expected one of {', '.join(kind.__members__)}") from None


def _values(key: str, value: Any) -> list[Any]:
    """A scalar or a list as a non-empty list."""
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise ConfigError(f"{key}=[]: a sweep needs at least one value")
    return items


def _number(key: str, value: Any, optional: bool = False) -> float | None:
    """One swept value as a float (``inf`` spelled out is infinity; None only where ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, str) and value.strip().lower() in INF_WORDS:
        return math.inf
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: expected a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r}: expected a number{' (or null)' if optional else ''}") from None


def _whole(key: str, value: Any, optional: bool = False, words: tuple[str, ...] = ()) -> int | str | None:
    """One swept value as an int (None only where ``optional``; the strings in ``words`` kept as they are)."""
    if value is None and optional:
        return None
    if isinstance(value, str) and value.strip().lower() in words:
        return value.strip().lower()
    expected = "a whole number" + "".join(f" or '{w}'" for w in words) + (" (or null)" if optional else "")
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: expected {expected}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r}: expected {expected}") from None
    if not number.is_integer():
        raise ConfigError(f"{key}={value!r}: expected {expected}")
    return int(number)


def _at_least(key: str, value: Any, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(
            f"{key}={value!r}: expected a whole number >= {low}{' (or null)' if optional else ''}"
        )


@dataclass
class PolicySpec:
    """One recommendation policy (spec section 3). Each number may be a list: the run sweeps it.

    After construction every swept field is a tuple (``(1.0,)`` for ``beta=1``).
    """

    name: str = "softmax"  # a label for titles (the numbers below define the policy)
    beta: Any = 1.0  # float | list: sensitivity >= 0; `inf` recommends the argmax
    k: Any = None  # int | 'n' | null | list: top-k truncation (null = off, n = all creators)
    tau: Any = None  # float | null | list: threshold truncation in [-1, 1]
    eps: Any = 0.0  # float | list: uniform-traffic mixing weight in [0, 1]
    rho: Any = 0.0  # float | list: diversity-aware objective weight >= 0
    mmr_lambda: Any = None  # float | null | list: MMR re-ranking weight in [0, 1] (needs k)

    def __post_init__(self) -> None:
        self.beta = tuple(_number("policy.beta", v) for v in _values("policy.beta", self.beta))
        self.k = tuple(_whole("policy.k", v, True, (ALL_CREATORS,)) for v in _values("policy.k", self.k))
        self.tau = tuple(_number("policy.tau", v, True) for v in _values("policy.tau", self.tau))
        self.eps = tuple(_number("policy.eps", v) for v in _values("policy.eps", self.eps))
        self.rho = tuple(_number("policy.rho", v) for v in _values("policy.rho", self.rho))
        self.mmr_lambda = tuple(
            _number("policy.mmr_lambda", v, True) for v in _values("policy.mmr_lambda", self.mmr_lambda)
        )


@dataclass
class DynamicsSpec:
    """Update rules (spec section 2). eta_u, eta_c and fixed_dims may be lists: the run sweeps them."""

    eta_u: Any = 0.1  # float | list: user rate in [0, 1] (0 freezes the users)
    eta_c: Any = 0.1  # float | list: creator rate in [0, 1] (0 freezes the creators)
    f: Impact = Impact.sign  # user impact function
    g: Impact = Impact.sign  # creator impact function
    tanh_slope: float = 1.0
    fixed_dims: Any = 0  # int | list: the first coordinates of every user never move
    creator_rule: Any = (
        "audience"  # str | list: audience (the paper) | exposure | engagement (their gradient)
    )
    creator_cost: Any = 0.0  # float | list: adjustment cost c >= 0 of the creators (the step / (1 + c))

    def __post_init__(self) -> None:
        self.creator_rule = tuple(
            _choice(CreatorRule, "dynamics.creator_rule", v).value
            for v in _values("dynamics.creator_rule", self.creator_rule)
        )
        self.creator_cost = tuple(
            _number("dynamics.creator_cost", v) for v in _values("dynamics.creator_cost", self.creator_cost)
        )
        self.eta_u = tuple(_number("dynamics.eta_u", v) for v in _values("dynamics.eta_u", self.eta_u))
        self.eta_c = tuple(_number("dynamics.eta_c", v) for v in _values("dynamics.eta_c", self.eta_c))
        self.fixed_dims = tuple(
            _whole("dynamics.fixed_dims", v) for v in _values("dynamics.fixed_dims", self.fixed_dims)
        )
        self.f = _choice(Impact, "dynamics.f", self.f)
        self.g = _choice(Impact, "dynamics.g", self.g)


POLICY_KEYS = ("beta", "k", "tau", "eps", "rho", "mmr_lambda")
DYNAMICS_KEYS = ("eta_u", "eta_c", "fixed_dims", "creator_rule", "creator_cost")
GRID_KEYS = (*POLICY_KEYS, *DYNAMICS_KEYS, "retrain_every")
"""The swept keys, in replica order, by short name (metrics.csv's columns); a grid of ``sim.grids`` sets
some of them."""
GRID_NAME = "name"  # a grid's label: the `family` column of metrics.csv


@dataclass
class ChurnSpec:
    """Creators come and go (``sim.churn``; beyond the paper): see :class:`rectest.sim.churn.Churn`."""

    window: int = 0  # steps over which a creator's audience is averaged; 0 = no churn
    min_share: float = 0.1  # leave below this share of the uniform audience m / n
    entrant: str = "uniform"  # uniform (on the sphere) | copy (a noisy copy of a successful creator)
    noise: float = 0.1  # copy: std of the noise added before the entrant is put back on the sphere

    def engine(self) -> Churn | None:
        """The engine's :class:`~rectest.sim.churn.Churn` (None when ``window = 0``).

        Raises:
            ConfigError: a value out of range (the engine's message, naming the key).
        """
        if self.window == 0:
            return None
        try:
            return Churn(self.window, self.min_share, self.entrant, self.noise)
        except ValueError as err:
            raise ConfigError(str(err)) from None


RUN_PREFIX = "run:"  # sim.init=run:PATH starts from an earlier run's exported embeddings


@dataclass
class SimSpec:
    """The simulation loop: horizon, replicas, device, who scores, checkpoints."""

    steps: int = 1000  # 0: train and export only
    seeds: list[int] = field(default_factory=lambda: list(range(8)))
    log_every: int = 1
    device: Device = Device.auto
    dtype: DType = DType.float32
    init: str = "embeddings"  # embeddings | truth (the synthetic world's true vectors) | run:PATH
    recommender: Recommender = Recommender.oracle
    retrain_every: Any = 0  # int | list: steps between retrains of the learned recommender (0 = never)
    feedback_noise: float = 0.0  # std of Gaussian noise added to logged feedback
    window: int = 100  # retrain on the interactions logged in the last `window` steps
    warm_start_epochs: int = 1
    n_creators: int | None = 2000  # how many items become creators (all when fewer); null = all
    creators: CreatorChoice = CreatorChoice.most_rated  # which items become creators
    transform: Transform = Transform.none  # geometry of the starting vectors
    n_users: int | None = None  # a random sample of m users; null = all
    chunk_size: int = 8192  # users per chunk when scoring (bounds the m x n memory)
    sampler: Sampler = Sampler.rejection  # how draws are made; both are exact (rectest.sim.rejection)
    checkpoint_every: int = 100  # steps between state checkpoints (0 = never)
    r_polarized: float = 0.05  # radius of the r-polarization flag
    threads: int | None = None  # CPU threads (set by the entry point); null = 1 for small problems
    shards: Any = 1  # users split over this many torchrun processes (1: one process; auto: all of them)
    objective: str = "TP"  # the final measure (mean over replicas) the entry point returns to sweepers
    # the replicas are the union of these grids (each: swept keys by short name, optional `name`); each grid
    # starts from the values above and in `policy` / `dynamics`; [] = one grid, those values
    grids: list[dict[str, Any]] = field(default_factory=list)
    churn: ChurnSpec = field(default_factory=ChurnSpec)  # creators leave and entrants take their slots

    def __post_init__(self) -> None:
        self.retrain_every = tuple(
            _whole("sim.retrain_every", v) for v in _values("sim.retrain_every", self.retrain_every)
        )
        if any(v < 0 for v in self.retrain_every):
            raise ConfigError(f"sim.retrain_every={list(self.retrain_every)}: expected >= 0 (0 = never)")
        self.seeds = [int(s) for s in self.seeds]
        if not self.seeds:
            raise ConfigError("sim.seeds=[]: expected at least one seed")
        repeated = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if repeated:
            raise ConfigError(
                f"sim.seeds={self.seeds}: seed(s) {repeated} repeated; a repeated seed runs the same trajectory "
                "twice and understates the spread across seeds (expected distinct seeds)"
            )
        for key, low, optional in (
            ("steps", 0, False),
            ("log_every", 1, False),
            ("checkpoint_every", 0, False),
            ("n_creators", 1, True),
            ("n_users", 1, True),
            ("chunk_size", 1, False),
            ("window", 1, False),
            ("warm_start_epochs", 0, False),
            ("threads", 1, True),
        ):
            _at_least(f"sim.{key}", getattr(self, key), low, optional)
        self.shards = _whole("sim.shards", self.shards, words=(AUTO,))
        if self.shards != AUTO:
            _at_least("sim.shards", self.shards, 1)
        if isinstance(self.churn, dict):
            self.churn = ChurnSpec(**self.churn)
        _at_least("sim.churn.window", self.churn.window, 0)
        self.churn.engine()  # the engine's checks, before anything is written
        self.grids = [dict(g) for g in self.grids]
        for i, g in enumerate(self.grids):
            unknown = sorted(set(g) - {*GRID_KEYS, GRID_NAME})
            if unknown:
                raise ConfigError(
                    f"sim.grids[{i}] has key(s) {unknown}: expected swept keys among {', '.join(GRID_KEYS)} "
                    f"and an optional '{GRID_NAME}'"
                )
        names = [str(g.get(GRID_NAME, i)) for i, g in enumerate(self.grids)]
        if len(set(names)) < len(names):
            raise ConfigError(f"sim.grids: names {names} repeat; expected one name per grid")
        if self.objective not in MEASURES:
            raise ConfigError(f"sim.objective={self.objective!r}: expected one of {', '.join(MEASURES)}")
        self.device = _choice(Device, "sim.device", self.device)
        self.dtype = _choice(DType, "sim.dtype", self.dtype)
        self.sampler = _choice(Sampler, "sim.sampler", self.sampler)
        self.recommender = _choice(Recommender, "sim.recommender", self.recommender)
        self.creators = _choice(CreatorChoice, "sim.creators", self.creators)
        self.transform = _choice(Transform, "sim.transform", self.transform)
        if self.init not in ("embeddings", "truth") and not self.init.startswith(RUN_PREFIX):
            raise ConfigError(f"sim.init={self.init!r}: expected one of embeddings, truth, run:PATH")
        if not 0 < self.r_polarized or not self.feedback_noise >= 0:
            raise ConfigError(
                f"sim.r_polarized={self.r_polarized}, sim.feedback_noise={self.feedback_noise}: "
                "expected r_polarized > 0 and feedback_noise >= 0"
            )

    @property
    def earlier_run(self) -> str | None:
        """The folder of ``sim.init=run:PATH`` (None for the other choices)."""
        return self.init[len(RUN_PREFIX) :] if self.init.startswith(RUN_PREFIX) else None


@dataclass
class LoggerSpec:
    """What the run writes besides metrics.csv, summary.json and table.md."""

    tensorboard: bool = True
    projector: bool = True  # embedding-projector snapshots at the first and last step
    figures: bool = True
    progress: bool = True  # live bars on a terminal, a plain line now and then otherwise; false = silent


@dataclass
class ModelSpec:
    """The recommender: its plain keys, and the built net and task (``net(num_users=, num_items=)``,
    ``task(net=)``) with every other argument bound."""

    dim: int = 16  # embedding dimension d of the exported vectors
    feedback: str = (
        "explicit"  # explicit | implicit (a string: ${model.feedback} reaches the task's arguments)
    )
    batch_size: int = 1024
    num_negatives: int = 0  # sampled negatives per positive (implicit feedback)
    exclude_positives: bool = True  # a user's other training items are never its negatives
    patience: int = 5  # early-stopping patience in epochs
    net: Any = None  # the net's `_target_` node; in a built spec, a callable
    task: Any = None  # the task's `_target_` node; in a built spec, a callable

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACKS:
            raise ConfigError(f"model.feedback={self.feedback!r}: expected one of {', '.join(FEEDBACKS)}")
        for key, low in (("dim", 1), ("batch_size", 1), ("num_negatives", 0), ("patience", 0)):
            _at_least(f"model.{key}", getattr(self, key), low)


@dataclass
class RunSpec:
    """Everything one run needs.

    Attributes:
        data: loads the data (a :class:`~rectest.data.bundle.DataBundle`) when called.
        model: the recommender to train (unused when nothing is trained).
        trainer: builds the Lightning Trainer from keyword arguments.
        policy, dynamics, sim, logger: the plain groups.
        seed: seeds training (and, in the data option, the data).
        identity: the resolved configuration as text; a run folder holding another identity is another
            run (resume refused). Filled by the builder; from Python, derived from the fields.
    """

    data: Callable[[], Any]
    model: ModelSpec = field(default_factory=ModelSpec)
    trainer: Callable[..., Any] | None = None
    policy: PolicySpec = field(default_factory=PolicySpec)
    dynamics: DynamicsSpec = field(default_factory=DynamicsSpec)
    sim: SimSpec = field(default_factory=SimSpec)
    logger: LoggerSpec = field(default_factory=LoggerSpec)
    seed: int = 0
    identity: str = ""

    def __post_init__(self) -> None:
        if not self.identity:
            plain = {k: v for k, v in asdict(self).items() if k not in ("logger", "identity")}
            self.identity = json.dumps(plain, sort_keys=True, default=_describe, indent=1) + "\n"


def _describe(value: Any) -> Any:
    """A callable or an Enum as stable text (no memory address), for :attr:`RunSpec.identity`."""
    if isinstance(value, Enum):
        return value.value
    func = getattr(value, "func", value)
    name = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', type(func).__name__)}"
    args = getattr(value, "keywords", None)
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in sorted(args.items()))})" if args is not None else name
