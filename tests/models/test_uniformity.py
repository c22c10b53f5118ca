"""The uniformity loss (Wang & Isola, 2020) and the two-tower option that uses it."""

from __future__ import annotations

import math

import pytest
import torch

from rectest.errors import ConfigError
from rectest.models.mf import MatrixFactorization
from rectest.models.task import RecommenderTask, uniformity_loss
from rectest.models.two_tower import TwoTower
from rectest.sim.geometry import start_geometry


def test_uniformity_loss_closed_forms():
    same = torch.tensor([[1.0, 0.0, 0.0]]).repeat(5, 1)
    assert float(uniformity_loss(same, 2.0)) == pytest.approx(0.0)  # every distance 0
    antipodes = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    assert float(uniformity_loss(antipodes, 2.0)) == pytest.approx(-8.0)  # ||x - y||^2 = 4
    simplex = torch.tensor([[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]])
    assert float(uniformity_loss(simplex, 1.0)) == pytest.approx(-3.0, abs=1e-5)  # ||x - y||^2 = 3


def test_uniformity_needs_the_two_tower():
    with pytest.raises(ConfigError, match="uniformity"):
        RecommenderTask(MatrixFactorization(4, 6, dim=2), "implicit", "bpr", uniformity=0.5)
    with pytest.raises(ConfigError, match="uniformity"):
        RecommenderTask(TwoTower(4, 6, dim=2), "implicit", "full_softmax", uniformity=-1.0)


def test_the_uniformity_term_spreads_the_items():
    """Gradient steps on the uniformity term alone turn a clustered item cloud into a spread one."""
    torch.manual_seed(0)
    net = TwoTower(8, 300, dim=4, id_dim=8, hidden=[])
    with torch.no_grad():  # start clustered: every item near one direction
        net.item_tower.embedding.weight.normal_(std=0.01)
        net.item_tower.mlp[0].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    task = RecommenderTask(net, "implicit", "full_softmax", uniformity=1.0)
    before = start_geometry(net.user_vectors(), net.item_vectors())["TP"]
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    users = torch.arange(8)
    for _ in range(150):
        opt.zero_grad()
        task._uniformity(users).backward()
        opt.step()
    after = start_geometry(net.user_vectors(), net.item_vectors())["TP"]
    assert before > 0.9 and after < 0.5


def test_the_uniformity_items_come_from_the_pool_when_one_is_set():
    net = TwoTower(8, 50, dim=4, id_dim=8, hidden=[])
    task = RecommenderTask(net, "implicit", "full_softmax", uniformity=1.0)
    seen: list[torch.Tensor] = []
    real = net.unit_vectors

    def record(user, item):
        seen.append(item)
        return real(user, item)

    net.unit_vectors = record
    task._uniformity(torch.arange(8))
    assert len(seen[-1].unique()) > 30  # the whole catalogue
    task.set_uniformity_pool(torch.tensor([3, 7, 11]))
    task._uniformity(torch.arange(8))
    assert set(seen[-1].tolist()) == {3, 7, 11}
