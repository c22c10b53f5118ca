"""Draw one creator per user from unnormalised weights by inverse-CDF sampling.

``torch.multinomial`` is several times slower than a softmax over the same row on CPU (see
``benchmarks/bench_sim.py``); a cumulative sum plus ``searchsorted`` costs about one more pass over the
row and, because the caller supplies the uniforms, makes each replica's draw depend only on its own
generator (and not on how users are chunked).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_inverse_cdf(weights: Tensor, uniforms: Tensor) -> tuple[Tensor, Tensor]:
    """Sample one index per row with probability proportional to ``weights``.

    Args:
        weights: ``(..., n)`` non-negative weights, each row with a positive sum.
        uniforms: ``(...)`` draws in ``[0, 1)``, one per row.

    Returns:
        ``(...)`` int64 indices ``i`` with ``cdf[i-1] <= u * total < cdf[i]`` (an index of zero weight is
        never returned), and ``(..., 1)`` the row totals ``cdf[..., -1]``.
    """
    cdf = weights.cumsum(-1)  # (..., n)
    target = uniforms.to(cdf.dtype).unsqueeze(-1) * cdf[..., -1:]  # (..., 1)
    idx = torch.searchsorted(cdf, target.contiguous(), right=True).squeeze(-1)  # (...)
    return idx.clamp_max(weights.shape[-1] - 1), cdf[..., -1:]


def sample_multinomial(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reference sampler via ``torch.multinomial`` (for benchmarks and tests).

    Args:
        weights: ``(..., n)`` non-negative weights.
        generator: optional source of randomness.

    Returns:
        ``(...)`` int64 indices.
    """
    flat = weights.reshape(-1, weights.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(weights.shape[:-1])


def sample_gumbel_max(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reference sampler via the Gumbel-max trick (for benchmarks): needs ``n`` uniforms per row.

    Args:
        weights: ``(..., n)`` non-negative weights.
        generator: optional source of randomness.

    Returns:
        ``(...)`` int64 indices.
    """
    u = torch.rand(weights.shape, generator=generator, dtype=weights.dtype, device=weights.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-30)))
    return (weights.log() + gumbel).argmax(-1)
