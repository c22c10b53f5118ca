"""Inverse-CDF sampling: support, exact frequencies, independence of the uniforms' source."""

import torch

from rectest.sim import sample_inverse_cdf


def test_never_returns_a_zero_weight_index_even_at_the_ends():
    w = torch.tensor([[0.0, 0.0, 2.0, 0.0, 1.0, 0.0]]).expand(5, -1)
    u = torch.tensor([0.0, 1e-9, 0.5, 0.6667, 1 - 1e-7])
    idx, total = sample_inverse_cdf(w, u)
    assert torch.allclose(total, torch.full((5, 1), 3.0))
    assert idx.tolist() == [2, 2, 2, 4, 4]


def test_frequencies_match_the_weights(gen):
    w = torch.tensor([0.5, 0.0, 3.0, 1.0, 0.25, 2.25], dtype=torch.float64)
    N = 200_000
    idx, _ = sample_inverse_cdf(w.expand(N, -1), torch.rand(N, generator=gen, dtype=torch.float64))
    counts = torch.bincount(idx, minlength=6).double()
    p = w / w.sum()
    chi2 = ((counts - N * p)[p > 0] ** 2 / (N * p[p > 0])).sum().item()
    assert counts[1] == 0
    assert chi2 < 20.5  # chi-square with 4 degrees of freedom: P(> 20.5) < 4e-4


def test_inverse_cdf_is_monotone_in_the_uniform(gen):
    w = torch.rand(1, 30, generator=gen)
    u = torch.linspace(0, 0.999, 500)
    idx, _ = sample_inverse_cdf(w.expand(500, -1), u)
    assert (idx[1:] >= idx[:-1]).all() and idx[0] == 0 and idx[-1] == 29


def test_two_level_sampling_of_long_rows(gen):
    n, N = 1000, 100_000
    w = torch.rand(n, generator=gen, dtype=torch.float64) ** 4
    w[::3] = 0.0  # a third of the creators are ineligible
    w[-40:] = 0.0  # including the whole tail block
    u = torch.rand(N, generator=gen, dtype=torch.float64)
    idx, total = sample_inverse_cdf(w.expand(N, -1), u)
    assert torch.allclose(total, w.sum().expand(N, 1))
    assert (w[idx] > 0).all()
    cdf = w.cumsum(0)  # the one-level inverse CDF, by hand
    reference = torch.searchsorted(cdf, (u * cdf[-1]).contiguous(), right=True)
    assert (idx == reference).double().mean() > 0.9999  # equal but for float rounding at boundaries
    counts = torch.bincount(idx, minlength=n).double()
    p = w / w.sum()
    big = p * N > 20  # chi-square over the well-populated cells
    chi2 = ((counts[big] - N * p[big]) ** 2 / (N * p[big])).sum().item()
    dof = int(big.sum()) - 1
    assert chi2 < dof + 5 * (2 * dof) ** 0.5


def test_u_next_to_one_never_lands_on_a_trailing_zero():
    w = torch.zeros(2, 300)
    w[:, 5] = 1.0
    w[1, 150] = 2.0
    idx, _ = sample_inverse_cdf(w, torch.tensor([1 - 2**-24, 1 - 2**-24]))
    assert idx.tolist() == [5, 150]
