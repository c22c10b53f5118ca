"""Users split across processes: the engine's one strategy for reductions over users.

A :class:`~rectest.sim.engine.Simulation` given ``shards=UserShards(m)`` keeps only this process's
contiguous slice of the ``m`` users and every creator (creators are few: 2,000 x 16 at MovieLens-20M
scale, while the ``m x n`` scores are the cost). The step is the engine's; wherever it reduces over users
it asks this object, which adds the other ranks' shares with ``torch.distributed`` collectives:

1. the uniforms: each replica's generator draws those of *all* ``m`` users and the rank keeps its slice,
   so a user's draw does not depend on the world size;
2. the measures: RD's and RR's per-user sums are all-reduced, UD uses the strided user sample one process
   would take (gathered), the polarization flag all-reduced minima and second moments; CD, TP and the
   clusters come from the replicated creators;
3. the creator update: every rank's pulls are gathered and added in one process's order (``exact=True``)
   or per-creator sums are all-reduced (``exact=False``: less traffic at large ``m``, equal to rounding).

With ``exact=True`` a CPU run equals one process bit for bit (the logged RD and RR, means all-reduced over
ranks, to float rounding). Without an initialised process group it is a world of one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

SUM, MIN = "sum", "min"


def shard_bounds(total: int, world: int, rank: int) -> tuple[int, int]:
    """The ``[start, stop)`` users of ``rank``: contiguous, sizes differ by at most one, lower ranks larger.

    Raises:
        ValueError: ``world > total`` (a rank would hold no user) or ``rank`` outside ``[0, world)``.
    """
    if not 0 <= rank < world or world > total:
        raise ValueError(
            f"rank {rank} of world {world} over {total} users: expected 0 <= rank < world <= users"
        )
    base, extra = divmod(total, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def rank_and_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """(rank, world size) in ``group`` (the default group), or ``(0, 1)`` without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


class UserShards:
    """This process's share of ``total`` users and the collectives that combine the shares.

    Every rank must build the simulation with the same arguments and step it the same number of times:
    each step runs collectives on ``group``.

    Args:
        total: ``m``, the users of all ranks.
        group: the process group (None: the default one, or a world of one without torch.distributed).
        exact: gather every user's creator pull so the update adds them in one process's order.

    Attributes:
        rank, world: this process in the group.
        start, stop: this rank's users are ``[start, stop)``.

    Raises:
        ValueError: more ranks than users.
    """

    def __init__(self, total: int, group: dist.ProcessGroup | None = None, exact: bool = True):
        self.total, self.group, self.exact = total, group, exact
        self.rank, self.world = rank_and_world(group)
        self.start, self.stop = shard_bounds(total, self.world, self.rank)

    def reduce(self, x: Tensor, op: str = SUM) -> Tensor:
        """All-reduce ``x`` in place over the ranks (nothing in a world of one); returns it."""
        if self.world > 1:
            dist.all_reduce(x, op=dist.ReduceOp.SUM if op == SUM else dist.ReduceOp.MIN, group=self.group)
        return x

    def gather(self, x: Tensor) -> Tensor:
        """``(R, m_r, w)`` rows of this rank's users -> ``(R, m, w)`` rows of all users, in user order."""
        if self.world == 1:
            return x
        R, _, w = x.shape
        widest = shard_bounds(self.total, self.world, 0)[1]  # rank 0 holds the most users
        padded = x.new_zeros(R, widest, w)
        padded[:, : x.shape[1]] = x
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded, group=self.group)
        sizes = [b - a for a, b in (shard_bounds(self.total, self.world, r) for r in range(self.world))]
        return torch.cat([part[:, :size] for part, size in zip(parts, sizes, strict=True)], dim=1)

    def sample(self, users: Tensor, stride: int) -> Tensor:
        """``(R, ceil(m / stride), d)``: users ``0, stride, 2 stride, ...`` of all ranks, on every rank."""
        if self.world == 1:
            return users[:, ::stride]
        R, _, d = users.shape
        first = -(-self.start // stride)  # index in the sample of this rank's first sampled user
        mine = users[:, first * stride - self.start :: stride]  # (R, s_r, d)
        sample = users.new_zeros(R, -(-self.total // stride), d)
        sample[:, first : first + mine.shape[1]] = mine
        return self.reduce(sample)  # every other rank adds exact zeros

    def pull(self, terms: Tensor, chosen: Tensor, n: int) -> Tensor:
        """Per-creator sums of the users' ``(R, m_r, w)`` terms over all ranks: ``(R, n, w)``.

        Args:
            terms: each of this rank's users' contribution to the creator it was shown.
            chosen: ``(R, m_r)`` the creator shown to each of this rank's users.
            n: creators.
        """
        if self.exact and self.world > 1:
            terms, chosen = self.gather(terms), self.gather(chosen.unsqueeze(-1)).squeeze(-1)
        acc = creator_sums(terms, chosen, n)
        return acc if self.exact else self.reduce(acc)


def creator_sums(terms: Tensor, chosen: Tensor, n: int) -> Tensor:
    """``(R, n, w)`` sums of the ``(R, m, w)`` user terms over the users shown each creator (in user order)."""
    R, _, w = terms.shape
    flat = (chosen + torch.arange(R, device=chosen.device).view(R, 1) * n).reshape(-1)  # (R m,)
    acc = torch.zeros(R * n, w, dtype=terms.dtype, device=terms.device)
    acc.index_add_(0, flat, terms.reshape(-1, w))
    return acc.view(R, n, w)
