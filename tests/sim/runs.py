"""Helpers that run a simulation twice and compare the runs (shared by the engine and sampler tests)."""

from __future__ import annotations

import io

import torch

from rectest.sim import Simulation, State


def whole_and_resumed(state: State, args: tuple, seeds: list[int], log_every: int, stop: int, steps: int):
    """A run of ``steps`` steps, and one stopped after ``stop`` steps, checkpointed through ``torch.save`` and
    resumed in a fresh simulation for the rest. Returns ``(whole, first, resumed)``."""
    whole = Simulation(state, *args, seeds=seeds, log_every=log_every)
    whole.run(steps)
    first = Simulation(state, *args, seeds=seeds, log_every=log_every)
    first.run(stop)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = Simulation(state, *args, seeds=seeds, log_every=log_every)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.run(steps - stop)
    return whole, first, resumed


def assert_same_runs(chosen: tuple[list, list], sims: tuple[Simulation, Simulation]) -> None:
    """The same choices at every step, the same final vectors, and the same logged measures up to rounding."""
    for x, y in zip(*chosen, strict=True):
        assert torch.equal(x, y)
    a, b = sims
    assert torch.equal(a.users, b.users) and torch.equal(a.creators, b.creators)
    for name in ("CD", "TP", "RD", "RR"):
        assert torch.allclose(a.history[name], b.history[name], rtol=1e-5, atol=1e-6), name
