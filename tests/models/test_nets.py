"""The networks: MF's formula, two-tower scores, unit-norm vectors, and one scoring function."""

from __future__ import annotations

import pytest
import torch

from rectest.errors import ConfigError
from rectest.models.mf import MatrixFactorization
from rectest.models.two_tower import TwoTower
from rectest.sim.scoring import cosine_scores


def randomised_mf() -> MatrixFactorization:
    torch.manual_seed(0)
    net = MatrixFactorization(7, 11, dim=5, global_mean=3.5, init_std=0.5)
    torch.nn.init.normal_(net.user_bias.weight)
    torch.nn.init.normal_(net.item_bias.weight)
    return net


def test_mf_forward_is_the_biased_formula() -> None:
    net = randomised_mf()
    user, item = torch.tensor([0, 3, 6]), torch.tensor([10, 0, 4])
    want = torch.stack(
        [
            3.5
            + net.user_bias.weight[u, 0]
            + net.item_bias.weight[i, 0]
            + net.user_factors.weight[u] @ net.item_factors.weight[i]
            for u, i in zip(user.tolist(), item.tolist(), strict=True)
        ]
    )
    torch.testing.assert_close(net(user, item), want)


@pytest.mark.parametrize("make", [randomised_mf, lambda: TwoTower(7, 11, dim=4, id_dim=6, hidden=[8, 5])])
def test_pairwise_matrix_and_full_scores_agree(make) -> None:
    torch.manual_seed(1)
    net = make().eval()
    user = torch.tensor([0, 2, 5, 6])
    full = net.score_all(user)  # (4, 11)
    assert full.shape == (4, 11)
    items = torch.arange(11).expand(4, 11)  # (4, 11)
    torch.testing.assert_close(net(user, items), full)
    torch.testing.assert_close(net.score_matrix(user, torch.arange(11)), full)
    torch.testing.assert_close(
        net(user, torch.tensor([3, 3, 9, 0])), full[torch.arange(4), torch.tensor([3, 3, 9, 0])]
    )


@pytest.mark.parametrize("make", [randomised_mf, lambda: TwoTower(7, 11, dim=4, score="dot")])
def test_vectors_are_unit_norm_in_index_order(make) -> None:
    net = make().eval()
    users, items = net.user_vectors(), net.item_vectors()
    assert users.shape[0] == 7 and items.shape[0] == 11 and users.shape[1] == items.shape[1]
    torch.testing.assert_close(users.norm(dim=-1), torch.ones(7))
    torch.testing.assert_close(items.norm(dim=-1), torch.ones(11))
    if isinstance(net, MatrixFactorization):  # MF's exported vectors are its normalised factors
        torch.testing.assert_close(
            users[3] * net.user_factors.weight[3].norm(), net.user_factors.weight[3].detach()
        )


def test_two_tower_evaluation_scores_equal_the_simulation_scores() -> None:
    torch.manual_seed(2)
    net = TwoTower(9, 13, dim=16, id_dim=8, hidden=[12]).eval()
    user = torch.arange(9)
    evaluated = net.score_all(user)  # (9, 13): what validation ranks by
    simulated = cosine_scores(net.user_vectors(), net.item_vectors())  # (9, 13): what the policies see
    torch.testing.assert_close(evaluated, simulated, rtol=0, atol=1e-6)
    assert evaluated.abs().max() <= 1 + 1e-6


def test_two_tower_default_output_dimension_is_16() -> None:
    assert TwoTower(3, 4).user_vectors().shape == (3, 16)


def test_two_tower_rejects_unknown_score() -> None:
    with pytest.raises(ConfigError, match="euclid"):
        TwoTower(3, 4, score="euclid")


def test_mf_penalty_counts_touched_rows() -> None:
    net = randomised_mf()
    user, item = torch.tensor([1, 1]), torch.tensor([[2, 3], [4, 4]])
    w = net.user_factors.weight.pow(2).sum(-1) + net.user_bias.weight[:, 0].pow(2)
    v = net.item_factors.weight.pow(2).sum(-1) + net.item_bias.weight[:, 0].pow(2)
    want = (2 * w[1] + v[2] + v[3] + 2 * v[4]) / 2
    torch.testing.assert_close(net.penalty(user, item), want)


def test_two_tower_penalty_counts_touched_id_embeddings() -> None:
    torch.manual_seed(3)
    net = TwoTower(4, 6, dim=3, id_dim=5)
    user, item = torch.tensor([0, 2]), torch.tensor([[1, 1, 5], [0, 2, 3]])
    e_u = net.user_tower.embedding.weight.pow(2).sum(-1)
    e_i = net.item_tower.embedding.weight.pow(2).sum(-1)
    want = (e_u[0] + 2 * e_i[1] + e_i[5] + e_u[2] + e_i[0] + e_i[2] + e_i[3]) / 2
    torch.testing.assert_close(net.penalty(user, item), want)


def test_two_tower_catalogue_pass_equals_the_per_row_pass() -> None:
    """A batch naming more items than the catalogue runs the item tower once over all items."""
    torch.manual_seed(4)
    net = TwoTower(5, 6, dim=3, id_dim=4, hidden=[7])
    user = torch.tensor([0, 4, 2])
    item = torch.tensor([[5, 0, 0], [1, 2, 3], [4, 5, 1]])  # (3, 3): 9 > 6 items
    got = net(user, item)
    got.sum().backward()
    got_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    u = torch.nn.functional.normalize(net.user_tower(user), dim=-1)  # (3, 3)
    v = torch.nn.functional.normalize(net.item_tower(item), dim=-1)  # (3, 3, 3) per row
    want = torch.einsum("bd,bkd->bk", u, v)
    want.sum().backward()
    torch.testing.assert_close(got, want)
    for g, p in zip(got_grads, net.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)
