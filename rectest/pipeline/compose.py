"""From the composed Hydra config to the typed :class:`~rectest.pipeline.spec.RunSpec`, once.

With the entry point (``rectest/train.py``), the only module that imports Hydra or OmegaConf. It
registers the spec's dataclasses as the schemas of the plain groups (``defaults: [/schema_<group>@_here_,
_self_]`` in each YAML option), so a misspelt key is an error when the config is composed; then
:func:`build_spec` turns each ``_target_`` node (``data``, ``model.net``, ``model.task``, ``trainer``)
into a callable with its arguments bound and checked against the target's signature, and each plain group
into its dataclass with ``OmegaConf.to_object``.
"""

from __future__ import annotations

import functools
import inspect

from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rectest.errors import ConfigError
from rectest.pipeline.spec import DynamicsSpec, LoggerSpec, ModelSpec, PolicySpec, RunSpec, SimSpec

SCHEMAS: dict[str, type] = {
    "policy": PolicySpec,
    "dynamics": DynamicsSpec,
    "sim": SimSpec,
    "logger": LoggerSpec,
    "model": ModelSpec,
}
"""The config groups whose keys a schema fixes."""

IGNORED_ON_RESUME = ("logger", "run_name")  # may change between an interrupted run and its resume


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    # stored outside the groups (``schema_<group>``), so ``--help`` lists only real options under each group
    for group, schema in SCHEMAS.items():
        cs.store(name=f"schema_{group}", node=schema)


register_configs()


def build_spec(cfg: DictConfig) -> RunSpec:
    """The run specification of a composed config.

    Raises:
        ConfigError: a value of the wrong type, an unknown choice or a misspelt argument, naming the key.
    """
    try:
        groups = {group: OmegaConf.to_object(cfg[group]) for group in ("policy", "dynamics", "sim", "logger")}
        model_node = OmegaConf.masked_copy(cfg.model, [k for k in cfg.model if k not in ("net", "task")])
        model = ModelSpec(**OmegaConf.to_container(model_node, resolve=True))
    except OmegaConfBaseException as err:
        raise ConfigError(plain_message(err)) from None
    # resolved on the whole config (interpolations such as ${model.dim} reach outside the node)
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    model.net = _bound(plain.model.net, "model.net")
    model.task = _bound(plain.model.task, "model.task")
    return RunSpec(
        data=_bound(plain.data, "data"),
        model=model,
        trainer=_bound(plain.trainer, "trainer"),
        seed=int(cfg.seed),
        identity=identity(cfg),
        **groups,
    )


def identity(cfg: DictConfig) -> str:
    """The resolved config as YAML, less what may change on resume (see :data:`IGNORED_ON_RESUME`)."""
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(plain, dict)
    for key in IGNORED_ON_RESUME:
        plain.pop(key, None)
    return OmegaConf.to_yaml(OmegaConf.create(plain))


def _bound(node: DictConfig, what: str) -> functools.partial:
    """A ``_target_`` node as its target with the node's arguments bound (``???`` ones left to the caller):
    a ``functools.partial`` whose ``keywords`` are the node's plain values.

    Raises:
        ConfigError: an unknown target, or an argument the target does not take.
    """
    given = [k for k in node if not OmegaConf.is_missing(node, k)]  # `???`: filled by the caller
    try:
        built = instantiate(OmegaConf.masked_copy(node, given), _partial_=True, _convert_="all")
    except InstantiationException as err:
        raise ConfigError(f"{what}: {plain_message(err)}") from None
    try:
        inspect.signature(built.func).bind_partial(*built.args, **built.keywords)
    except TypeError as err:
        raise ConfigError(f"{what}: {err} (check the keys of {what})") from None
    except ValueError:  # a builtin without a signature: nothing to check
        pass
    return built


def plain_message(err: BaseException) -> str:
    """An OmegaConf or Hydra message on one line, without its ``full_key`` / ``object_type`` trailer."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = " ".join(ln for ln in lines if not ln.startswith(("full_key", "object_type", "reference_type")))
    return text.replace("$VALUE", "value") or type(err).__name__
