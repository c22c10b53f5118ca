"""Every config composes; misspelt keys fail; experiments are appended, never defaulted."""

from __future__ import annotations

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from tests.conftest import CONF, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
GROUPS = {
    g: sorted(p.stem for p in (CONF / g).glob("*.yaml"))
    for g in ("data", "model", "policy", "trainer", "logger")
}


def test_primary_config_does_not_list_experiment():
    defaults = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    names = [next(iter(d)) if isinstance(d, dict) else d for d in defaults]
    assert "experiment" not in names and "data" in names and "sim" in names


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    cfg = compose_config([f"+experiment={experiment}"])
    assert cfg.sim.steps > 0 and len(cfg.sim.seeds) >= 1


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    assert group in cfg


def test_every_experiment_starts_as_global_package():
    for name in EXPERIMENTS:
        first = (CONF / "experiment" / f"{name}.yaml").read_text().splitlines()[0]
        assert first.strip() == "# @package _global_", name


@pytest.mark.parametrize(
    "override", ["sim.stpes=5", "policy.betta=2", "dynamics.eta=0.1", "logger.tensorbord=false"]
)
def test_misspelt_key_is_an_error(override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_config([override])


def test_lists_sweep_from_the_command_line():
    cfg = compose_config(["policy=topk", "policy.k=[1,5,10,50]", "policy.beta=inf"])
    assert list(cfg.policy.k) == [1, 5, 10, 50]
    assert cfg.policy.beta == float("inf")
