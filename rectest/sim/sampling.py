"""Draw one creator per user from unnormalised weights by inverse-CDF sampling.

``torch.multinomial`` is several times slower than a softmax over the same row on CPU (see
``benchmarks/bench_sim.py``); a cumulative sum plus ``searchsorted`` costs about one more pass over the
row and, because the caller supplies the uniforms, makes each replica's draw depend only on its own
generator (and not on how users are chunked).
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK = 64


def sample_inverse_cdf(weights: Tensor, uniforms: Tensor) -> tuple[Tensor, Tensor]:
    """Sample one index per row with probability proportional to ``weights``, by inverse CDF.

    Rows longer than ``2 * BLOCK`` go in two levels, which avoids a cumulative sum over the whole row
    (a scan costs about twice an ``exp`` on CPU): block sums pick the block, then a cumulative sum inside
    the chosen block picks the index. Both levels invert the same CDF, so the draw is the one a single
    ``cumsum`` + ``searchsorted`` would make, up to float rounding.

    Args:
        weights: ``(..., n)`` non-negative weights, each row with a positive, finite sum.
        uniforms: ``(...)`` draws in ``[0, 1)``, one per row.

    Returns:
        ``(...)`` int64 indices ``i`` with ``cdf[i-1] <= u * total < cdf[i]`` (an index of zero weight is
        never returned), and ``(..., 1)`` the row totals.
    """
    n = weights.shape[-1]
    u = uniforms.to(weights.dtype).unsqueeze(-1)  # (..., 1)
    if n <= 2 * BLOCK:
        cdf = weights.cumsum(-1)  # (..., n)
        total = cdf[..., -1:]
        idx = torch.searchsorted(cdf, _below(u * total, total), right=True)
        return idx.squeeze(-1).clamp_max(n - 1), total
    nb = n // BLOCK
    sums = weights[..., : nb * BLOCK].unflatten(-1, (nb, BLOCK)).sum(-1)  # (..., nb) block sums
    sums = torch.cat([sums, weights[..., nb * BLOCK :].sum(-1, keepdim=True)], -1)  # (..., nb + 1) with tail
    block_cdf = sums.cumsum(-1)  # (..., nb + 1)
    total = block_cdf[..., -1:]  # (..., 1)
    target = _below(u * total, total)
    block = torch.searchsorted(block_cdf, target, right=True).clamp_max_(nb)  # (..., 1), positive sum
    before = torch.where(block > 0, block_cdf.gather(-1, (block - 1).clamp_min(0)), torch.zeros_like(target))
    fraction = (target - before) / sums.gather(-1, block)  # (..., 1) in [0, 1): position inside the block
    cols = block * BLOCK + torch.arange(BLOCK, device=weights.device)  # (..., BLOCK)
    inner = (weights.gather(-1, cols.clamp_max(n - 1)) * (cols < n)).cumsum(-1)  # (..., BLOCK)
    last = inner[..., -1:]
    pos = torch.searchsorted(inner, _below(fraction.clamp(0, 1) * last, last), right=True)  # (..., 1)
    return (block * BLOCK + pos.clamp_max(BLOCK - 1)).squeeze(-1).clamp_max(n - 1), total


def _below(x: Tensor, limit: Tensor) -> Tensor:
    """``x`` clamped strictly below ``limit`` (so a search with ``right=True`` stays inside the row)."""
    return torch.minimum(x, torch.nextafter(limit, torch.zeros_like(limit)))
