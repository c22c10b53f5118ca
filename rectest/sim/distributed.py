"""The simulation sharded over processes with ``torch.distributed``: users split across ranks.

Each rank holds a contiguous slice of the users and every creator (creators are few: 2,000 x 16 at
MovieLens-20M scale, while the ``m x n`` scores are the cost). One step on every rank:

1. recommend to its own users (the engine's chunked code); each replica's generator draws the uniforms of
   *all* ``m`` users and the rank keeps its slice, so a user's draw does not depend on the world size;
2. measure the time-t state: RD's and RR's per-user sums are all-reduced, CD / TP / clusters come from the
   replicated creators, UD from the same strided user sample one process would take (gathered), the
   polarization flag from all-reduced minima and second moments;
3. update its users (a per-user rule, exactly the engine's);
4. compute its users' pull on their creators, gather every rank's (``exact=True``, the default) or
   all-reduce per-creator sums (``exact=False``), and apply the creator update (the engine's formula)
   identically on every rank.

The result equals the single-process :class:`~rectest.sim.engine.Simulation` with the same seeds. With
``exact=True`` every rank adds all users' pulls in the single process's order, so on CPU the recommendations
and the user and creator vectors are bit for bit those of one process (the logged RD and RR, means
all-reduced over ranks, agree to float rounding); the price is gathering ``R x m x (d + 1)`` numbers per
step. ``exact=False`` all-reduces ``R x n x (d + 1)`` per-creator sums instead (less traffic and memory at
large ``m``): the same creators are recommended and the vectors agree to float rounding. Without an
initialised process group it runs as a world of one.

Launch (one process per GPU with ``nccl``, or per CPU group with ``gloo``)::

    torchrun --nproc_per_node=4 -m rectest.sim.distributed --users 138493 --creators 2000 --dim 16 \\
        --steps 500 --beta 1 --k 10 --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from rectest.sim import measures as M
from rectest.sim.dynamics import Dynamics
from rectest.sim.engine import UD_MAX_USERS, Simulation
from rectest.sim.policies import Policy
from rectest.sim.scoring import normalize
from rectest.sim.state import State, random_sphere

SUM, MIN = dist.ReduceOp.SUM, dist.ReduceOp.MIN


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


class ShardedSimulation(Simulation):
    """:class:`Simulation` over this rank's slice of the users; collectives keep the ranks in step.

    Every rank must construct it with the same arguments (the full initial state) and call :meth:`step`
    (or :meth:`run`) the same number of times: each step runs collectives on ``group``.

    Args:
        state: the full initial state (``m`` users); the rank keeps users :func:`shard_bounds` ``(m, W, r)``.
        policy, dynamics, seeds, log_every, chunk_size, r_polarized, ud_max_users: as for
            :class:`Simulation` (``chunk_size`` counts this rank's users).
        group: the process group (None: the default one, or a world of one without torch.distributed).
        exact: gather every user's pull so the creator update adds them in one process's order (see the
            module docstring); False: all-reduce per-creator sums.

    Attributes:
        total_users: ``m``, the users of all ranks.
        start, stop: this rank's users are ``[start, stop)``; ``users`` is ``(R, stop - start, d)``.

    Raises:
        ValueError: as :class:`Simulation`, or more ranks than users.
    """

    def __init__(
        self,
        state: State,
        policy: Policy,
        dynamics: Dynamics,
        seeds: Sequence[int],
        log_every: int = 1,
        chunk_size: int = 8192,
        r_polarized: float = 0.05,
        ud_max_users: int = UD_MAX_USERS,
        group: dist.ProcessGroup | None = None,
        exact: bool = True,
    ):
        self.group = group
        self.exact = exact
        self.rank, self.world = rank_and_world(group)
        self.total_users = state.m
        self.start, self.stop = shard_bounds(state.m, self.world, self.rank)
        local = State(state.users[:, self.start : self.stop], state.creators)
        local.users = state.users[:, self.start : self.stop]  # already unit: do not normalise twice
        local.creators = state.creators
        super().__init__(local, policy, dynamics, seeds, log_every, chunk_size, r_polarized, ud_max_users)
        self.ud_stride = math.ceil(state.m / ud_max_users)  # the sample one process would take

    # -- the step -----------------------------------------------------------------------------------------
    def step(
        self, score_users: Tensor | None = None, score_creators: Tensor | None = None, log: bool = False
    ) -> Tensor:
        """One synchronous step of all ranks (see the module docstring).

        Args:
            score_users: optional recommender user vectors, ``(R, m, d')`` for all users (this rank's
                slice is taken) or ``(R, stop - start, d')`` for this rank's users only.
            score_creators: optional ``(R, n, d')``, given together with ``score_users``.
            log: record the measures of this step even when ``t % log_every != 0``.

        Returns:
            ``(R, stop - start)`` int64 index of the creator recommended to each of this rank's users.

        Raises:
            SimulationError: non-finite weights (on the rank that finds them) or vectors (on every rank).
        """
        if score_users is not None and score_users.shape[-2] == self.total_users:
            score_users = score_users[..., self.start : self.stop, :]
        logged = log or self._force_log or self.t % self.log_every == 0
        view = self._policy_view(score_users, score_creators)
        chosen, rd, rr = self._recommend(view, logged)  # 1. recommend to this rank's users
        if logged or bool((self.first_polarized_step < 0).any()):
            polarized = self._is_polarized()  # (R,) the same on every rank
            self._mark_polarized(polarized.cpu())
            if logged:
                self._record(rd, rr, polarized)  # 2. measure (time-t state, time-t probabilities)
        users, creators = self._update(chosen)  # 3. + 4. update
        finite = (torch.isfinite(users).all((1, 2)) & torch.isfinite(creators).all((1, 2))).to(torch.int32)
        self._guard(self._reduce(finite, MIN).bool(), "vectors")
        self.users, self.creators = users, creators
        self.t += 1
        return chosen

    def draw_uniforms(self) -> Tensor:
        """``(R, stop - start)``: each replica draws the uniforms of all ``m`` users and keeps this rank's."""
        m = self.total_users
        every = [
            torch.rand(m, generator=g, device=self.users.device, dtype=self.users.dtype)
            for g in self.generators
        ]
        return torch.stack(every)[:, self.start : self.stop]  # (R, m_r)

    def _recommend(self, view: tuple[Tensor, Tensor], logged: bool) -> tuple[Tensor, Tensor, Tensor]:
        """The engine's recommendation of this rank's users; on logged steps RD and RR over all users."""
        chosen, rd, rr = super()._recommend(view, logged)  # rd, rr: means over this rank's users
        if not logged:
            return chosen, rd, rr
        sums = torch.stack([rd, rr]).double() * self.users.shape[1]  # (2, R) per-user sums of this rank
        sums = self._reduce(sums, SUM) / self.total_users
        return chosen, sums[0].to(rd.dtype), sums[1].to(rr.dtype)

    def _update(self, chosen: Tensor) -> tuple[Tensor, Tensor]:
        """New ``(R, m_r, d)`` users of this rank and ``(R, n, d)`` creators (identical on every rank).

        The creator rule is the engine's (``BoundDynamics.update``) with the pull and count summed over ranks.
        """
        R, m, d = self.users.shape
        n = self.creators.shape[1]
        users, _ = self.dynamics.update(self.users, self.creators, chosen)  # per-user rule: exact
        shown = self.creators.gather(1, chosen.unsqueeze(-1).expand(-1, -1, d))  # (R, m_r, d) v_{i_j}
        s = (self.users * shown).sum(-1, keepdim=True)  # (R, m_r, 1) s_{i_j j}
        terms = torch.cat([self.dynamics.g(s) * self.users, torch.ones_like(s)], -1)  # (R, m_r, d + 1)
        if self.exact and self.world > 1:
            terms, chosen = self._gather_users(terms), self._gather_users(chosen.unsqueeze(-1)).squeeze(-1)
        flat = (chosen + torch.arange(R, device=chosen.device).view(R, 1) * n).reshape(-1)  # (R m',)
        acc = torch.zeros(R * n, d + 1, dtype=self.users.dtype, device=self.users.device)
        acc.index_add_(0, flat, terms.reshape(-1, d + 1))  # sum_{j in S_i} g(s_ij) u_j and |S_i|
        if not self.exact:
            acc = self._reduce(acc, SUM)  # this rank's sums -> sums over all users
        acc = acc.view(R, n, d + 1)
        pull, count = acc[..., :d], acc[..., d:]  # (R, n, d), (R, n, 1)
        moved = normalize(self.creators + self.dynamics.eta_c * pull / count.clamp_min(1))  # (R, n, d)
        return users, torch.where(count > 0, moved, self.creators)

    def _gather_users(self, x: Tensor) -> Tensor:
        """``(R, m_r, w)`` rows of this rank's users -> ``(R, m, w)`` rows of all users, in user order."""
        R, _, w = x.shape
        widest = shard_bounds(self.total_users, self.world, 0)[1]  # rank 0 holds the most users
        padded = x.new_zeros(R, widest, w)
        padded[:, : x.shape[1]] = x
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded, group=self.group)
        sizes = [b - a for a, b in (shard_bounds(self.total_users, self.world, r) for r in range(self.world))]
        return torch.cat([part[:, :size] for part, size in zip(parts, sizes, strict=True)], dim=1)

    # -- measures over all ranks ----------------------------------------------------------------------------
    def _record(self, rd: Tensor, rr: Tensor, polarized: Tensor) -> None:
        """The engine's record, with UD over the gathered user sample of all ranks."""
        own, stride = self.users, self.ud_stride
        self.users, self.ud_stride = self._user_sample(), 1  # the engine reads users only for UD's sample
        try:
            super()._record(rd, rr, polarized)
        finally:
            self.users, self.ud_stride = own, stride

    def _user_sample(self) -> Tensor:
        """``(R, ceil(m / stride), d)`` users ``0, stride, 2 stride, ...`` of all ranks, on every rank."""
        R, _, d = self.users.shape
        stride = self.ud_stride
        first = -(-self.start // stride)  # index in the sample of this rank's first sampled user
        mine = self.users[:, first * stride - self.start :: stride]  # (R, s_r, d)
        sample = torch.zeros(
            R, -(-self.total_users // stride), d, dtype=self.users.dtype, device=self.users.device
        )
        sample[:, first : first + mine.shape[1]] = mine
        return self._reduce(sample, SUM)  # every other rank adds exact zeros

    def _is_polarized(self) -> Tensor:
        """``(R,)`` bool r-polarization flag over all users (``measures.is_polarized`` with all-reduces)."""
        users, creators, r = self.users, self.creators, self.r_polarized
        anchor = creators[:, :1].transpose(1, 2)  # (R, d, 1)
        near = self._reduce((users @ anchor).abs().amin((1, 2)), MIN)  # (R,)
        near = torch.minimum(near, (creators @ anchor).abs().amin((1, 2)))
        candidates = (near >= 1 - 2 * r * r).nonzero().flatten()  # (R',), the same on every rank
        out = torch.zeros(users.shape[0], dtype=torch.bool, device=users.device)
        if candidates.numel():
            u, c = users[candidates], creators[candidates]
            second = self._reduce(u.transpose(1, 2) @ u, SUM) + c.transpose(1, 2) @ c  # (R', d, d)
            axis = torch.linalg.eigh(second.double())[1][..., -1:].to(u.dtype)  # (R', d, 1) principal axis
            cos = torch.minimum(
                self._reduce((u @ axis).abs().amin((1, 2)), MIN), (c @ axis).abs().amin((1, 2))
            )
            out[candidates] = (2 - 2 * cos).clamp_min(0).sqrt() <= r
        return out

    def gather_state(self) -> State:
        """The full state (all ``m`` users) on every rank; a collective call."""
        R, _, d = self.users.shape
        users = torch.zeros(R, self.total_users, d, dtype=self.users.dtype, device=self.users.device)
        users[:, self.start : self.stop] = self.users
        users = self._reduce(users, SUM)  # every other rank adds exact zeros
        state = State(users[:, :1], self.creators[:, :1])
        state.users, state.creators = users, self.creators.clone()  # unit already: no second projection
        return state

    def _reduce(self, x: Tensor, op: dist.ReduceOp) -> Tensor:
        """All-reduce ``x`` in place over the group (nothing in a world of one); returns it."""
        if self.world > 1:
            dist.all_reduce(x, op=op, group=self.group)
        return x


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m rectest.sim.distributed",
        description="Sharded dual-influence simulation from random unit vectors (launch with torchrun).",
    )
    p.add_argument("--users", type=int, default=138_493, help="m (default: MovieLens-20M's users)")
    p.add_argument("--creators", type=int, default=2000, help="n")
    p.add_argument("--dim", type=int, default=16, help="d")
    p.add_argument("--steps", type=int, default=100, help="steps (>= 1)")
    p.add_argument("--beta", type=float, default=1.0, help="softmax sensitivity (inf: top-1)")
    p.add_argument("--k", type=int, default=None, help="top-k truncation (default: none)")
    p.add_argument("--eta-u", type=float, default=0.1)
    p.add_argument("--eta-c", type=float, default=0.1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one replica per seed")
    p.add_argument("--world-seed", type=int, default=0, help="seed of the random initial vectors")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default=None, help="rank 0 saves the history here (torch.save)")
    p.add_argument(
        "--all-reduce",
        action="store_true",
        help="all-reduce per-creator sums instead of gathering every user's pull (less traffic at large m; "
        "equal to one process up to float rounding instead of bit for bit)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point for ``torchrun ... -m rectest.sim.distributed``: joins the group torchrun describes
    (``nccl`` on CUDA, ``gloo`` otherwise), runs, and prints the final measures on rank 0."""
    args = _parse(argv)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    gen = torch.Generator().manual_seed(args.world_seed)
    users = random_sphere(1, args.users, args.dim, gen).to(device)  # (1, m, d) the same on every rank
    creators = random_sphere(1, args.creators, args.dim, gen).to(device)  # (1, n, d)
    sim = ShardedSimulation(
        State(users, creators),
        Policy(beta=args.beta, k=args.k),
        Dynamics(eta_u=args.eta_u, eta_c=args.eta_c),
        seeds=args.seeds,
        log_every=args.log_every,
        exact=not args.all_reduce,
    )
    start = time.perf_counter()
    history = sim.run(args.steps)
    elapsed = time.perf_counter() - start
    if sim.rank == 0 and history["step"].numel():
        print(
            f"{sim.world} rank(s), {args.users} users, {args.creators} creators, d={args.dim}, on {device}: "
            f"{args.steps} steps in {elapsed:.2f} s ({elapsed / max(args.steps, 1) * 1e3:.1f} ms/step)"
        )
        print("seed " + " ".join(f"{name:>9}" for name in (M.CD, M.RD, M.RR, M.TP)))
        for r, seed in enumerate(args.seeds):
            print(
                f"{seed:>4} "
                + " ".join(f"{float(history[name][-1, r]):9.4f}" for name in (M.CD, M.RD, M.RR, M.TP))
            )
        if args.out:
            torch.save(history, args.out)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
