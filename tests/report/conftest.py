"""A metrics frame built from a closed-form rule, so every test knows the right answer in advance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from rectest.report.frames import history_frame
from rectest.report.values import MEASURES

STEPS = (0, 5, 10, 15)
# replica r: (params, seed); two seeds per setting, one setting with a single seed
PARAMS: tuple[dict[str, Any], ...] = ({"k": 1}, {"k": 1}, {"k": None}, {"k": None}, {"k": 10})
SEEDS = (0, 1, 0, 1, 0)
POLARIZED_FROM = (5, 15, None, 10, None)  # first polarized step per replica (None: never)


def rule(measure: str, step: int, replica: int) -> float:
    """The value of ``measure`` at ``step`` for ``replica``: distinct per measure, step and replica."""
    if measure == "polarized":
        first = POLARIZED_FROM[replica]
        return float(first is not None and step >= first)
    index = MEASURES.index(measure)
    return 0.125 * (index + 1) + 0.0625 * step + 0.25 * replica**2


@dataclass
class Known:
    """The synthetic run: its history tensors, the frame built from them and the rule behind it."""

    history: dict[str, torch.Tensor]
    frame: Any
    params: tuple[dict[str, Any], ...] = PARAMS
    seeds: tuple[int, ...] = SEEDS
    steps: tuple[int, ...] = STEPS

    @staticmethod
    def value(measure: str, step: int, replica: int) -> float:
        return rule(measure, step, replica)


def known_history() -> dict[str, torch.Tensor]:
    history = {"step": torch.tensor(STEPS)}
    for m in MEASURES:
        history[m] = torch.tensor(
            [[rule(m, t, r) for r in range(len(PARAMS))] for t in STEPS], dtype=torch.float64
        )  # (L, R)
    return history


@pytest.fixture
def known() -> Known:
    history = known_history()
    return Known(history=history, frame=history_frame(history, list(PARAMS), list(SEEDS)))
