"""The simulation loop: one synchronous step is a short story (recommend, measure, update users,
update creators), batched over replicas and chunked over users."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rectest.sim import measures as M
from rectest.sim import native
from rectest.sim.churn import Churn, CreatorChurn
from rectest.sim.dynamics import Dynamics
from rectest.sim.errors import SimulationError
from rectest.sim.incentives import check_climbers, creator_gradient
from rectest.sim.policies import BoundPolicy, Policy
from rectest.sim.rejection import (
    PROPOSALS,
    draw_proposals,
    draw_truncated,
    rejected_replicas,
    sample_by_rejection,
)
from rectest.sim.sampling import sample_inverse_cdf
from rectest.sim.scoring import normalize
from rectest.sim.shards import UserShards
from rectest.sim.state import State
from rectest.sim.toplists import initial_lists
from rectest.sim.twins import Twins

UD_MAX_USERS = 4096
EXITS = "exits"  # history entry with churn: creators replaced (and as many entrants) before the step
# On CPU a chunk holds at most this many scores (8 MB in float32): temporaries below glibc's mmap threshold are
# recycled by the allocator instead of being page-faulted in afresh for every chunk (2-3x faster), and the passes
# after the score matmul (exp, block sums) find the chunk in cache: 0.9x the time of 32 MB chunks for the topk
# experiment's batch at the ml-100k shape, 2 threads (fewer, larger chunks pay more per-op overhead).
CPU_MAX_CHUNK_ELEMENTS = 1 << 21
# ... and replicas are taken in blocks small enough that a chunk still holds this many users of each: the score
# matmul of 24 replicas x 38 users x 1,682 creators (d = 64) costs 1.8x that of 4 replicas x 311 users.
CPU_MIN_CHUNK_ROWS = 256
SAMPLERS = ("rejection", "inverse_cdf")


@dataclass
class _Part:
    """A block of replicas with one kind of policy in a step's batch, and what its draws need."""

    replicas: Tensor  # (R',) int64
    span: slice | None  # the replicas as a slice when consecutive (views instead of copies)
    policy: BoundPolicy
    rejected: bool  # drawn by rejection after the chunks (full rows only for RD and RR on logged steps)
    lists: Tensor | None = None  # (R', m, L) top-k candidate lists, or None
    hints: Tensor | None = None  # (R', m) float32 top-k selection hints, or None
    truncated: bool = False  # drawn by the truncated draw (rectest.sim.select.draw_truncated)
    proposals: Tensor | None = None  # (R', m, PROPOSALS) float64 its uniforms, while the part is sampled
    creators: Tensor | None = None  # (R', n, d') the policy's view of the creators
    creators_t: Tensor | None = None  # (R', d', n) the same, transposed and contiguous
    true_users: Tensor | None = None  # (R', m, d) the true users, on logged steps
    true_creators: Tensor | None = None  # (R', n, d) the true creators, on logged steps

    @property
    def size(self) -> int:
        """R', the number of replicas."""
        return self.policy.replicas

    def take(self, x: Tensor) -> Tensor:
        """This part's rows of ``x`` (replicas first)."""
        return x[self.span] if self.span is not None else x.index_select(0, self.replicas)

    def put(self, out: Tensor, values: Tensor) -> None:
        """Write this part's ``values`` into its rows of ``out``."""
        if self.span is not None:
            out[self.span] = values
        else:
            out.index_copy_(0, self.replicas, values)

    def clear(self, flags: Tensor, where: Tensor) -> None:
        """Set this part's entries of the ``(R,)`` bool ``flags`` to False where ``where`` ``(R',)`` holds."""
        if bool(where.any()):
            flags[self.replicas[where]] = False

    def check_totals(self, flags: Tensor, total: Tensor) -> None:
        """Clear ``flags`` ``(R,)`` for this part's replicas with a row sum ``total`` ``(R', c, 1)`` of weights
        that is not finite and positive."""
        self.clear(flags, ~(torch.isfinite(total).all((1, 2)) & (total > 0).all((1, 2))))

    def add(self, sums: Tensor, terms: tuple[Tensor, Tensor]) -> None:
        """Add this part's ``(R',)`` RD and RR terms to ``sums`` ``(2, R)``."""
        stacked = torch.stack(terms)  # (2, R')
        if self.span is not None:
            sums[:, self.span] += stacked
        else:
            sums.index_add_(1, self.replicas, stacked)


class Simulation:
    """A batch of ``R = len(seeds)`` independent replicas of the dual-influence dynamics.

    Replica ``r`` draws its randomness from its own ``torch.Generator`` seeded with ``seeds[r]`` (one
    uniform per user per step, then inverse-CDF sampling; with the rejection sampler also a fixed number of
    proposals per user), so its trajectory depends only on its seed, its parameters and its initial state:
    not on the other replicas, ``chunk_size`` or ``log_every``. Only work is shared: replicas of an argmax
    policy with the same start and dynamics follow one trajectory, computed once (:mod:`rectest.sim.twins`).

    Args:
        state: initial vectors with ``R`` replicas, or one replica that is copied to all ``R``.
        policy: recommendation policy (scalars or per-replica lists of length ``R``).
        dynamics: update rules (scalars or per-replica lists of length ``R``).
        seeds: one integer seed per replica.
        log_every: measures are recorded when ``t % log_every == 0`` and at the last step of :meth:`run`.
        chunk_size: at most ``chunk_size`` users (in each replica) are scored at once, so no temporary holds
            more than ``R * chunk_size * n`` scores (pairwise measures: ``R * chunk_size * n`` pairs). On
            CPU a chunk is further capped at ``CPU_MAX_CHUNK_ELEMENTS`` scores. Results do not depend on it.
        r_polarized: radius of the r-polarization flag.
        ud_max_users: UD is computed over an evenly strided subset of at most this many users (exact when
            ``m <= ud_max_users``), since all user pairs would cost ``m^2 d`` per logged step.
        shards: this process's share of the users (:class:`~rectest.sim.shards.UserShards`, launched with
            torchrun): the simulation holds users ``[shards.start, shards.stop)`` of ``state`` and every
            reduction over users runs over all ranks; the result is one process's. None: all users here.
        churn: creators leave and entrants take their slots (:class:`~rectest.sim.churn.Churn`); the
            history then has ``exits``, the creators replaced before each logged step. None: no churn.
        sampler: ``"rejection"``: softmax and threshold replicas with ``beta <= REJECTION_MAX_BETA`` and at
            least ``REJECTION_MIN_CREATORS`` creators are drawn by exact rejection sampling
            (:mod:`rectest.sim.rejection`), without scoring every creator, and top-k replicas beyond the
            k-lists (or with a threshold or uniform traffic) by rejection from their eligible creators
            (:func:`rectest.sim.select.draw_truncated`: compiled on the CPU, the same draws in torch elsewhere),
            without an exp of every score; ``"inverse_cdf"``: every replica from its full row (the draws of
            earlier runs).

    Raises:
        ValueError: bad parameter values or inconsistent replica counts (the message names the value).
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
        shards: UserShards | None = None,
        churn: Churn | None = None,
        sampler: str = "rejection",
    ):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler={sampler!r}: expected one of {', '.join(SAMPLERS)}")
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("seeds=[]: expected at least one seed")
        if log_every < 1 or chunk_size < 1 or ud_max_users < 2:
            raise ValueError(
                f"log_every={log_every}, chunk_size={chunk_size}, ud_max_users={ud_max_users}: "
                "expected log_every >= 1, chunk_size >= 1, ud_max_users >= 2"
            )
        if not 0 <= r_polarized <= 2:
            raise ValueError(f"r_polarized={r_polarized}: expected a radius in [0, 2]")
        R = len(seeds)
        if state.replicas not in (1, R):
            raise ValueError(f"the state has {state.replicas} replicas but seeds has {R} entries")
        if shards is not None and shards.total != state.m:
            raise ValueError(f"shards over {shards.total} users, but the state has {state.m}")
        self.shards = shards
        mine = slice(shards.start, shards.stop) if shards is not None else slice(None)
        self.users = state.users[:, mine].expand(R, -1, -1).clone()  # (R, m, d), this rank's m_r if sharded
        self.creators = state.creators.expand(R, -1, -1).clone()  # (R, n, d)
        device, dtype = self.users.device, self.users.dtype
        if device.type == "cpu":
            native.keep_freed_memory()  # each step reuses the last one's pages (rectest.sim.native)
        self.policy = policy.bind(R, state.n, device, dtype)
        self.dynamics = dynamics.bind(R, state.d, device, dtype)
        check_climbers(policy, self.dynamics.rules)
        self.sampler = sampler
        self.rejecting = (
            rejected_replicas(self.policy) if sampler == "rejection" else []
        )  # (replicas, policy)
        self.seeds = seeds
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.log_every, self.chunk_size, self.r_polarized = log_every, chunk_size, r_polarized
        self.ud_stride = math.ceil(state.m / ud_max_users)  # the sample is over all m users
        self._lists: dict[int, Tensor | None] = {}  # top-k lists or hints per block (a cache: see _top_cache)
        self._block_list: list[tuple[list[int], BoundPolicy]] | None = None  # see _blocks
        self.t = 0
        self.first_polarized_step = torch.full((R,), -1, dtype=torch.long)
        self._records: list[dict[str, Tensor]] = []
        self._force_log = False
        self.churn = None
        if churn is not None:
            self.churn = CreatorChurn(churn, seeds, state.n, state.m, device)
        self.twins = Twins()  # replicas that follow an earlier one's trajectory (rectest.sim.twins)
        if churn is None and shards is None and self.dynamics.climbs is None:
            self.twins = Twins.find(self.users, self.creators, self.policy, self.dynamics)
        self._ties: list[tuple[Tensor, Tensor, Tensor]] = []  # this step's tied top-k users (for the twins)
        self._uniforms: Tensor | None = None  # (R, m) the step's uniforms, drawn in place (see draw_uniforms)
        self._uniform_rows: tuple[Tensor, ...] = ()

    @property
    def state(self) -> State:
        """The current vectors (a copy; this rank's users when sharded, see :meth:`gather_state`)."""
        return State.of_unit(self.users.clone(), self.creators.clone())

    def gather_state(self) -> State:
        """The vectors of all ``m`` users and the creators (a copy; a collective call when sharded)."""
        users = self.users
        if self.shards is not None and self.shards.world > 1:
            R, _, d = users.shape
            full = users.new_zeros(R, self.shards.total, d)
            full[:, self.shards.start : self.shards.stop] = users
            users = self.shards.reduce(full)  # every other rank adds exact zeros
        return State.of_unit(users.clone(), self.creators.clone())

    @property
    def replicas(self) -> int:
        """R."""
        return self.users.shape[0]

    # -- the step -----------------------------------------------------------------------------------------
    def step(
        self, score_users: Tensor | None = None, score_creators: Tensor | None = None, log: bool = False
    ) -> Tensor:
        """One synchronous step from time ``t`` to ``t + 1``.

        Args:
            score_users: optional ``(R, m, d')`` (or ``(m, d')``) vectors whose cosines with
                ``score_creators`` the policy uses instead of the true scores (a learned recommender);
                updates and RR always use the true scores.
            score_creators: optional ``(R, n, d')`` (or ``(n, d')``), given together with ``score_users``.
            log: record the measures of this step even when ``t % log_every != 0`` (e.g. a driver's last step).

        Returns:
            ``(R, m)`` int64 index of the creator recommended to each user.

        Raises:
            SimulationError: non-finite weights or vectors; the message names the step and the replicas.
        """
        logged = log or self._force_log or self.t % self.log_every == 0
        if self.dynamics.climbs is not None and score_users is not None:  # refused before anything moves
            raise ValueError(
                "dynamics.creator_rule=exposure / engagement needs the oracle recommender: the gradient "
                "assumes the platform scores with the true vectors"
            )
        if score_users is not None and self.twins:  # a recommender's scores may differ between replicas
            self.twins = Twins()
            self._forget_blocks()
        view = self._policy_view(score_users, score_creators)
        chosen, rd, rr = self._recommend(view, logged)  # 1. recommend
        unmarked = self.first_polarized_step < 0  # (R,) the replicas whose first polarized step is still open
        if logged or bool(unmarked.any()):  # (on unlogged steps only their flags matter)
            among = None if logged else unmarked
            polarized = M.is_polarized(
                self.users, self.creators, self.r_polarized, self.shards, among
            )  # (R,)
            self._mark_polarized(polarized.cpu())
            if logged:
                self._record(rd, rr, polarized)  # 2. measure (time-t state, time-t probabilities)
        gradient = self._creator_gradient()  # (R, n, d); None under the audience rule
        # 3. + 4. users drift toward what they were shown, creators toward their audience (or up a gradient)
        users, creators = self.dynamics.update(self.users, self.creators, chosen, self.shards, gradient)
        if self.churn is not None:  # 5. creators with too small an audience leave; entrants take their slots
            creators = self.churn.step(self.t, chosen, creators, self.shards)
        if self.twins and self.twins.settle(chosen, users, creators):  # a follower drew apart (a tie)
            self._forget_blocks()
        # (R,) a NaN or an infinity anywhere makes the replica's sum non-finite; finite unit vectors cannot
        # overflow it (one reduction pass: 45x cheaper than isfinite(...).all() at the ml-100k shape)
        finite = torch.isfinite(users.sum((1, 2)) + creators.sum((1, 2)))
        if self.shards is not None:  # every rank stops together
            finite = self.shards.reduce(finite.to(torch.int32), "min").bool()
        self._guard(finite, "vectors")
        self.users, self.creators = users, creators
        self.t += 1
        return chosen

    def _creator_gradient(self) -> Tensor | None:
        """The creators' exposure or engagement gradient, for replicas whose creators climb one (else None)."""
        if self.dynamics.climbs is None:
            return None
        n = self.creators.shape[1]
        return creator_gradient(
            self.users, self.creators, self.policy, self.dynamics.engagement, self._chunk(n), self.shards
        )

    def run(self, steps: int, callback: Callable[[Simulation], Any] | None = None) -> dict[str, Tensor]:
        """Run ``steps`` steps (measures recorded on logged steps and the last one).

        Args:
            steps: number of steps, ``>= 0``.
            callback: called as ``callback(sim)`` after each step.

        Returns:
            :attr:`history`.
        """
        if steps < 0:
            raise ValueError(f"steps={steps}: expected >= 0")
        for i in range(steps):
            self._force_log = i == steps - 1
            try:
                self.step()
            finally:
                self._force_log = False
            if callback is not None:
                callback(self)
        return self.history

    def draw_uniforms(self) -> Tensor:
        """This step's uniforms: one per user per replica, each replica from its own generator.

        A sharded simulation draws the uniforms of all users and keeps its own, so a user's draw does not
        depend on the sharding.

        Returns:
            ``(R, m)`` draws in ``[0, 1)`` for the users this simulation holds: a buffer that the next call
            overwrites (``torch.rand``'s numbers, drawn into the rows of one tensor kept across steps: a third
            cheaper than a new tensor per replica and a stack).
        """
        m = self.shards.total if self.shards is not None else self.users.shape[1]
        if self._uniforms is None:
            self._uniforms = torch.empty(
                len(self.generators), m, dtype=self.users.dtype, device=self.users.device
            )
            self._uniform_rows = self._uniforms.unbind(0)  # (R,) views of (m,)
        for row, g in zip(self._uniform_rows, self.generators, strict=True):
            row.uniform_(generator=g)  # (torch.rand(m, generator=g) is this, bit for bit)
        every = self._uniforms  # (R, m)
        return every if self.shards is None else every[:, self.shards.start : self.shards.stop]

    def _sample_by_rejection(
        self, view: tuple[Tensor, Tensor], uniforms: Tensor, chosen: Tensor, finite: Tensor
    ) -> None:
        """Draw the rejection-sampled replicas' creators into ``chosen`` ``(R, m)`` (see rectest.sim.rejection),
        over whatever the full-row pass left there for them.

        Each such replica draws ``PROPOSALS`` uniforms per user from its own generator, after the step's
        inverse-CDF uniforms (all ``m`` users' when sharded, so a draw does not depend on the sharding). Clears
        ``finite`` ``(R,)`` for the replicas with a user whose scores hold a NaN.
        """
        users, creators = view
        for replicas, part in self.rejecting:
            draws = self._proposals(replicas.tolist())  # (R', m_r, PROPOSALS) float64
            picks = sample_by_rejection(
                part,
                users.index_select(0, replicas),
                creators.index_select(0, replicas),
                draws,
                uniforms.index_select(0, replicas),
                self._chunk(creators.shape[1]),
            )  # (R', m)
            chosen.index_copy_(0, replicas, picks)
            finite[replicas[(picks < 0).any(1)]] = False  # a NaN score

    def _policy_view(
        self, score_users: Tensor | None, score_creators: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The (users, creators) whose cosines the policy sees: the truth or a recommender's embeddings."""
        if (score_users is None) != (score_creators is None):
            raise ValueError("score_users and score_creators must be given together")
        if score_users is None:
            return self.users, self.creators
        R = self.replicas
        su = score_users.unsqueeze(0) if score_users.dim() == 2 else score_users
        sc = score_creators.unsqueeze(0) if score_creators.dim() == 2 else score_creators
        su = normalize(su.to(self.users)).expand(R, -1, -1)
        sc = normalize(sc.to(self.users)).expand(R, -1, -1)
        if su.shape[1] != self.users.shape[1] or sc.shape[1] != self.creators.shape[1]:
            raise ValueError(
                f"score_users {tuple(score_users.shape)} / score_creators {tuple(score_creators.shape)}: "
                f"expected {self.users.shape[1]} users and {self.creators.shape[1]} creators"
            )
        return su, sc

    def _recommend(self, view: tuple[Tensor, Tensor], logged: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Sample one creator per user, block by block and chunk by chunk; on logged steps also sum RD's and
        RR's terms."""
        R, m, _ = self.users.shape
        pol_users, pol_creators = view
        uniforms = self.draw_uniforms()  # (R, m): replica r's draws come from its own generator only
        chosen = torch.empty(R, m, dtype=torch.long, device=self.users.device)
        sums = torch.zeros(2, R, dtype=self.users.dtype, device=self.users.device)  # RD's and RR's terms
        finite = torch.ones(R, dtype=torch.bool, device=self.users.device)  # (R,)
        parts = self._parts(pol_creators, logged)
        for p in parts:
            if logged:  # RD and RR need the true vectors only, not the true scores
                p.true_users, p.true_creators = p.take(self.users), p.take(self.creators)
            users, draws, out = p.take(pol_users), p.take(uniforms), p.take(chosen)
            if p.truncated:  # (drawn part by part: one part's proposals in memory at a time)
                p.proposals = self._proposals(p.replicas.tolist())
            for a, b in M._row_chunks(m, self._chunk(self.creators.shape[1], p.size)):
                rows = slice(a, b)
                truth = p.true_users[:, rows] if logged else None  # (R', c, d) true users, for RR
                self._sample_part(p, rows, users[:, rows], draws[:, rows], out[:, rows], truth, sums, finite)
            if p.span is None:  # out is a copy: write it back
                p.put(chosen, out)
            p.proposals = None
        if self.twins:
            self.twins.copy_draws(chosen, sums, finite, uniforms, self._ties)
        self._ties.clear()
        self._sample_by_rejection(view, uniforms, chosen, finite)  # (logged steps: over the full rows' draws)
        self._guard(finite, "recommendation weights")
        if self.shards is None or not logged:
            return chosen, sums[0] / m, sums[1] / m
        sums = self.shards.reduce(sums.double()) / self.shards.total  # (2, R) per-user sums over all ranks
        return chosen, sums[0].to(self.users.dtype), sums[1].to(self.users.dtype)

    def _blocks(self) -> list[tuple[list[int], BoundPolicy]]:
        """The policy's kinds (its parts, or the whole batch), each cut into blocks of consecutive replicas.

        On CPU a block holds few enough replicas that a chunk of ``CPU_MAX_CHUNK_ELEMENTS`` scores still has
        ``CPU_MIN_CHUNK_ROWS`` users of each: the score matmul's cost per score grows as its rows shrink.
        Made once (the policy, m and n do not change).
        """
        if self._block_list is None:
            R, m = self.users.shape[:2]
            n = self.creators.shape[1]
            size = R
            if self.users.device.type == "cpu":
                size = max(1, CPU_MAX_CHUNK_ELEMENTS // (min(m, CPU_MIN_CHUNK_ROWS) * n))
            self._block_list = []
            for rs, part in self.policy.kinds():
                computed = [i for i, r in enumerate(rs) if r not in self.twins.followers]  # positions in rs
                for a in range(0, len(computed), size):
                    block = computed[a : a + size]
                    sub = part if len(block) == len(rs) else part.subset(block)
                    self._block_list.append(([rs[i] for i in block], sub))
        return self._block_list

    def _forget_blocks(self) -> None:
        """Remake the blocks (and their top-k lists and hints, a cache) at the next step."""
        self._block_list = None
        self._lists.clear()

    def _parts(self, pol_creators: Tensor, logged: bool) -> list[_Part]:
        """The blocks of replicas (:meth:`_blocks`) this step scores full rows for: on unlogged steps, those
        not drawn by rejection."""
        out = []
        for rs, policy in self._blocks():
            rejected = policy.rejects and self.sampler == "rejection"  # drawn by rejection after the chunks
            if rejected and not logged:
                continue
            consecutive = rs == list(range(rs[0], rs[-1] + 1))
            span = slice(rs[0], rs[-1] + 1) if consecutive else None
            replicas = torch.tensor(rs, device=self.users.device)
            lists, hints = self._top_cache(policy)
            p = _Part(replicas, span, policy, rejected, lists=lists, hints=hints)
            p.truncated = policy.draws_truncated and self.sampler == "rejection"
            p.creators = p.take(pol_creators)
            # (contiguous: a batched matmul with a transposed view is up to 2x slower on CPU)
            p.creators_t = p.creators.transpose(1, 2).contiguous()  # (R', d', n) this block's only
            out.append(p)
        return out

    def _proposals(self, replicas: list[int]) -> Tensor:
        """This step's ``(R', m, PROPOSALS)`` float64 proposal uniforms of some replicas, each from its own
        generator after the step's inverse-CDF uniforms (all users' when sharded, as :meth:`draw_uniforms`)."""
        m = self.shards.total if self.shards is not None else self.users.shape[1]
        draws = torch.empty(len(replicas), m, PROPOSALS, dtype=torch.float64, device=self.users.device)
        for i, r in enumerate(replicas):
            draw_proposals(self.generators[r], draws[i])
        return draws if self.shards is None else draws[:, self.shards.start : self.shards.stop]

    def _top_cache(self, part: BoundPolicy) -> tuple[Tensor | None, Tensor | None]:
        """The selection cache of a top-k policy block, made at first use: ``(R', m, L)`` int32 candidate lists
        (rectest.sim.toplists) or ``(R', m)`` float32 hints (rectest.sim.select), or neither. A cache: the draws
        do not depend on it."""
        if id(part) not in self._lists:
            m, device = self.users.shape[1], self.users.device
            cache = None
            if part.list_length is not None:
                cache = initial_lists(part.replicas, m, part.list_length, device)
            elif part.hinted:
                cache = torch.full((part.replicas, m), math.nan, dtype=torch.float32, device=device)
            self._lists[id(part)] = cache
        cache = self._lists[id(part)]
        if cache is None:
            return None, None
        return (cache, None) if cache.dim() == 3 else (None, cache)

    def _sample_part(
        self,
        p: _Part,
        rows: slice,
        users: Tensor,
        uniforms: Tensor,
        out: Tensor,
        truth: Tensor | None,
        sums: Tensor,
        finite: Tensor,
    ) -> None:
        """One chunk of one block's users, with the block's fast path: top-k from the k-lists, plain softmax
        with beta folded into the score matmul, the truncated draw (longer top-k lists, by rejection from the
        eligible creators), the rest from full rows. The draws are those of the general path up to
        float rounding, except the truncated draw's (the same distribution, other draws).

        Args:
            p: the block (:meth:`_parts`).
            rows: this chunk's users.
            users: ``(R', c, d')`` the policy's view of this chunk's users, of the block's replicas.
            uniforms: ``(R', c)`` this chunk's draws.
            out: ``(R', c)`` receives the choices.
            truth: ``(R', c, d)`` the chunk's true users on logged steps (None: unlogged).
            sums: ``(2, R)`` receives RD's and RR's per-user terms (logged steps).
            finite: ``(R,)`` cleared for replicas whose weights are not finite and positive.
        """
        logged = truth is not None
        if p.policy.plain_softmax and not logged:  # exp(beta s) with beta folded into the matmul
            w = torch.matmul(users * p.policy.beta, p.creators_t).exp_()  # (R', c, n)
            out[:], total = sample_inverse_cdf(w, uniforms)  # (R', c), (R', c, 1)
            p.check_totals(finite, total)
            return
        part_seen = users @ p.creators_t  # (R', c, n) the policy's scores
        if p.truncated:  # the truncated draw (on logged steps the full rows give RD and RR)
            out[:], thresholds = draw_truncated(p.policy, part_seen, uniforms, p.proposals[:, rows])
            p.clear(finite, (out < 0).any(1))  # a NaN score
            if logged:
                w = p.policy.weights_above(part_seen, thresholds)  # (R', c, n) unnormalised, as weights()
                total = w.sum(-1, keepdim=True)  # (R', c, 1)
                p.check_totals(finite, total)
                p.add(sums, M.recommendation_sums(w, truth, p.true_creators, total))
            return
        if p.policy.mmr_native:  # the compiled MMR lists (and on logged steps RD and RR from them)
            draw = p.policy.draw_mmr(part_seen, p.creators_t, uniforms)
            out[:] = draw.chosen
            p.check_totals(finite, draw.total)
            if logged:
                p.add(
                    sums,
                    M.sparse_recommendation_sums(
                        draw.weights, draw.creators, draw.total, truth, p.true_creators
                    ),
                )
            return
        if p.policy.topk_only:  # from the k-lists (and on logged steps RD and RR from them too)
            hints = None if p.hints is None else p.hints[:, rows].contiguous()  # (R', c), refreshed
            draw = p.policy.draw_top_k(
                part_seen, uniforms, None if p.lists is None else p.lists[:, rows], hints
            )
            if hints is not None:
                p.hints[:, rows] = hints
            out[:] = draw.chosen
            if draw.tied is not None and self.twins:  # a leader's followers draw these users themselves
                self._ties.append((p.replicas[draw.tied[0]], draw.tied[1] + rows.start, draw.tied_weights))
            if logged:
                dense = None if draw.tied is None else (*draw.tied, draw.tied_weights)
                p.add(
                    sums,
                    M.sparse_recommendation_sums(
                        draw.weights, draw.creators, draw.total, truth, p.true_creators, dense
                    ),
                )
            return
        w = p.policy.weights(part_seen, p.creators)  # (R', c, n) unnormalised
        if p.rejected:  # a logged step: the full rows give RD and RR, the draws come by rejection
            total = w.sum(-1, keepdim=True)  # (R', c, 1)
        else:
            out[:], total = sample_inverse_cdf(w, uniforms)  # (R', c), (R', c, 1)
        p.check_totals(finite, total)
        if logged:
            p.add(sums, M.recommendation_sums(w, truth, p.true_creators, total))

    def _record(self, rd: Tensor, rr: Tensor, polarized: Tensor) -> None:
        """Append the measures of the time-t state to the history."""
        n, stride = self.creators.shape[1], self.ud_stride
        sample = self.users[:, ::stride] if self.shards is None else self.shards.sample(self.users, stride)
        creators = self.creators
        if self.twins:  # followers' measures are their leaders'
            computed = torch.tensor(self.twins.computed(list(range(self.replicas))), device=creators.device)
            creators, sample = creators.index_select(0, computed), sample.index_select(0, computed)
            leaders = self.twins.positions(self.replicas, creators.device)  # (R,) into the computed replicas
        chunk = self._chunk(n, creators.shape[0])
        cd, tp, clusters = M.creator_pair_measures(creators, chunk)  # one pass over pairs
        ud = M.user_diversity(sample, self._chunk(sample.shape[1], sample.shape[0]))
        if self.twins:
            cd, tp, clusters, ud = (x[leaders] for x in (cd, tp, clusters, ud))
        values = {
            M.CD: cd,
            M.RD: rd,
            M.RR: rr,
            M.TP: tp,
            M.UD: ud,
            M.CLUSTERS: clusters,
            M.POLARIZED: polarized,
        }
        record = {name: values[name].detach().to("cpu", torch.float64) for name in M.MEASURES}
        if self.churn is not None:
            record[EXITS] = self.churn.exits.to(torch.float64)  # (R,) creators replaced before step t
        record["step"] = torch.tensor(self.t)
        self._records.append(record)

    def _chunk(self, width: int, replicas: int | None = None) -> int:
        """Rows per chunk for ``(replicas, rows, width)`` temporaries (all replicas by default; capped on CPU,
        see ``CPU_MAX_CHUNK_ELEMENTS``)."""
        if self.users.device.type != "cpu":
            return self.chunk_size
        return min(self.chunk_size, max(1, CPU_MAX_CHUNK_ELEMENTS // ((replicas or self.replicas) * width)))

    def _mark_polarized(self, polarized: Tensor) -> None:
        """Set ``first_polarized_step`` where the ``(R,)`` flag holds at time t for the first time."""
        new = polarized & (self.first_polarized_step < 0)
        self.first_polarized_step[new] = self.t

    def _guard(self, finite: Tensor, what: str) -> None:
        """Raise SimulationError naming the step and the replicas whose ``finite`` flag is False."""
        if bool(finite.all()):
            return
        bad = (~finite).nonzero().flatten().tolist()
        seeds = [self.seeds[r] for r in bad]
        raise SimulationError(f"non-finite {what} at step {self.t} in replica(s) {bad} (seeds {seeds})")

    # -- results and checkpoints ----------------------------------------------------------------------------
    @property
    def history(self) -> dict[str, Tensor]:
        """``"step"``: ``(L,)`` int64 logged steps; each name in ``MEASURES``: ``(L, R)`` float64."""
        R = self.replicas
        names = [*M.MEASURES, *([EXITS] if self.churn is not None else [])]
        if not self._records:
            out = {name: torch.zeros(0, R, dtype=torch.float64) for name in names}
            out["step"] = torch.zeros(0, dtype=torch.long)
            return out
        out = {name: torch.stack([rec[name] for rec in self._records]) for name in names}
        out["step"] = torch.stack([rec["step"] for rec in self._records])
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-identically: vectors, generator states, t, history.

        Holds only tensors, ints, lists and dicts (``torch.load(..., weights_only=True)`` reads it). When
        sharded, every rank must call it (the users of all ranks are gathered) and any rank's copy resumes
        any sharding.
        """
        return {
            "users": self.gather_state().users.detach().cpu(),  # all m users (a collective when sharded)
            "creators": self.creators.detach().cpu().clone(),
            "t": self.t,
            "seeds": list(self.seeds),
            "generators": [g.get_state() for g in self.generators],
            "first_polarized_step": self.first_polarized_step.clone(),
            "history": self.history,
            "twins": self.twins.state(),
            **({"churn": self.churn.state_dict()} if self.churn is not None else {}),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` taken from a simulation of the same shape and seeds.

        Raises:
            ValueError: shapes or seeds differ from this simulation's.
        """
        users = sd["users"] if self.shards is None else sd["users"][:, self.shards.start : self.shards.stop]
        if tuple(users.shape) != tuple(self.users.shape) or tuple(sd["creators"].shape) != tuple(
            self.creators.shape
        ):
            raise ValueError(
                f"checkpoint holds users {tuple(sd['users'].shape)} and creators {tuple(sd['creators'].shape)}; "
                f"this simulation has {tuple(self.users.shape)} and {tuple(self.creators.shape)}"
            )
        if list(sd["seeds"]) != self.seeds:
            raise ValueError(
                f"checkpoint seeds {list(sd['seeds'])} differ from this simulation's {self.seeds}"
            )
        self.users = users.to(self.users)
        self.creators = sd["creators"].to(self.creators)
        self.t = int(sd["t"])
        for g, s in zip(self.generators, sd["generators"], strict=True):
            g.set_state(s)
        self.first_polarized_step = sd["first_polarized_step"].clone()
        self.twins = Twins(dict(sd.get("twins", [])))  # (none in checkpoints older than twins)
        self._forget_blocks()
        if self.churn is not None:
            if "churn" not in sd:
                raise ValueError("the checkpoint was taken without churn; this simulation has churn")
            self.churn.load_state_dict(sd["churn"])
        hist = sd["history"]
        self._records = [
            {**{name: hist[name][i] for name in hist if name != "step"}, "step": hist["step"][i]}
            for i in range(hist["step"].shape[0])
        ]
