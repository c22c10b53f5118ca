"""Recommendation policies (spec section 3): softmax(beta), top-k, threshold, uniform traffic,
the diversity-aware objective and MMR re-ranking, composed as the spec says.

Composition: a truncation (top-k, MMR list, threshold; several intersect) picks the eligible creators of
each user; the base distribution over them is softmax(beta) or the diversity-aware fixed point; uniform
traffic ``eps`` mixes last. A user with no eligible creator (threshold) gets a uniformly random creator
among all ``n``.

Every parameter may be a scalar or one value per replica. ``beta = inf`` recommends the argmax (ties go
to the lowest index). For speed the policy returns unnormalised weights and their row sums; sampling does
not need the normalised ``p``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from rectest.sim import mmr as mmr_kernel
from rectest.sim import rho as rho_kernel
from rectest.sim import select, toplists
from rectest.sim.params import PerReplica, as_list, check_range, column, per_replica
from rectest.sim.sampling import sample_inverse_cdf
from rectest.sim.toplists import list_length, top_entries

# Up to this beta, exp(beta * s) for a cosine s lies in [e^-40, e^40]: no overflow or underflow in float32
# (a row of 10^20 such weights still sums below the float32 maximum), so no row max is needed.
_NO_SHIFT_BETA = 40.0
# Top-k lists up to this length form their own part of a batch that mixes them with longer lists or other
# policies, sampled from the list alone: torch.topk of k + 1 scores costs less than an exp and a cumulative
# sum over all n creators for short lists, more for long ones (benchmarks/bench_policies.py; a k = 100 list
# costs about as much).
SHORT_LIST = 16
# With the compiled selection (rectest/sim/select.py), lists are kept up to this k: their check costs less than
# the kernel below it (ml-100k shape, 48 replicas, one thread: top-20 241 ms a step with lists against 351 ms,
# top-50 342 against 347 ms, top-100 599 against 372 ms).
NATIVE_LIST_MAX = 64
# Batches of top-k replicas alone sample from their k-lists up to this k: beyond it the sorted torch.topk of
# k + 1 scores costs more than the general path (k-th value, exp, cumulative sum): at the ml-100k shape
# top-1000 took 4.7 s a step on the list path against 2.2 s for a logged step on the general one
# (benchmarks/bench_policies.py).
TOPK_LIST_MAX = 256
# Softmax (and threshold) replicas up to this beta are drawn by exact rejection sampling
# (rectest/sim/rejection.py): the acceptance probability exp(beta (s - 1)) stays above e^-6.
REJECTION_MAX_BETA = 3.0
# ... and only with at least this many creators: below it a full row costs about as much as the proposals (the
# paper's synthetic worlds, n = 50, keep the full-row draws)
REJECTION_MIN_CREATORS = 256
# The diversity-aware fixed point iterates rows in tiles of about this many probabilities (2 MiB each for p,
# its target and beta s in float32), which stay in the cache across iterations.
RHO_TILE_ELEMENTS = 1 << 19


@dataclass
class Policy:
    """A recommendation policy; each parameter is a scalar or a per-replica sequence.

    Attributes:
        beta: sensitivity ``>= 0``; ``float('inf')`` is the argmax (top-1).
        k: top-k truncation, ``None`` = off; ``k >= n`` is no truncation.
        tau: threshold truncation in ``[-1, 1]``, ``None`` = off (``-1`` is the same as off).
        eps: uniform-traffic weight in ``[0, 1]``.
        rho: diversity weight ``>= 0`` of the diversity-aware objective *(reconstruction of the paper's
            Eq. 5)*: per user, ``p`` maximises ``sum_i p_i s_i + rho (1 - ||sum_i p_i v_i||^2) + H(p)/beta``,
            found by damped fixed-point iteration ``p <- (1 - a) p + a softmax(beta (s + rho (1 - 2 V vbar)))``
            with ``a = 1 / (1 + 2 beta rho)`` (a gradient step on the convex dual: it converges for every rho),
            from the plain softmax, for at most ``rho_iters`` iterations or until no probability of the user
            moves by more than ``rho_tol``. Not defined for ``beta = inf`` (ValueError).
        mmr_lambda: MMR re-ranking weight in ``[0, 1]`` (``None`` = off; needs ``k``): a greedy list of
            ``k`` creators maximising ``lambda s_i - (1 - lambda) max_{picked l} <v_i, v_l>`` (the first
            pick is the argmax of ``s``), then softmax(beta) over the list (beyond the paper).
        rho_iters: iteration cap of the diversity-aware fixed point.
        rho_tol: convergence tolerance of the diversity-aware fixed point.
    """

    beta: PerReplica = 1.0
    k: PerReplica = None
    tau: PerReplica = None
    eps: PerReplica = 0.0
    rho: PerReplica = 0.0
    mmr_lambda: PerReplica = None
    rho_iters: int = 100
    rho_tol: float = 1e-6

    def __post_init__(self) -> None:
        beta = as_list(self.beta, "policy.beta")
        if beta is None:
            raise ValueError("policy.beta=None: expected a number >= 0 or inf")
        check_range(beta, "policy.beta", 0.0, math.inf)
        k = as_list(self.k, "policy.k", optional=True)
        for x in k or []:
            if x is not None and (x != int(x) or x < 1):
                raise ValueError(f"policy.k={x:g}: expected an integer >= 1 (or None for no truncation)")
        check_range(as_list(self.tau, "policy.tau", optional=True), "policy.tau", -1.0, 1.0)
        check_range(as_list(self.eps, "policy.eps"), "policy.eps", 0.0, 1.0)
        rho = as_list(self.rho, "policy.rho") or [0.0]
        check_range(rho, "policy.rho", 0.0, 1e30)
        mmr = as_list(self.mmr_lambda, "policy.mmr_lambda", optional=True)
        check_range(mmr, "policy.mmr_lambda", 0.0, 1.0)
        if self.rho_iters < 1 or not self.rho_tol > 0:
            raise ValueError(f"rho_iters={self.rho_iters}, rho_tol={self.rho_tol}: expected >= 1 and > 0")
        for lam, x in _pairs(mmr or [None], k or [None]):
            if lam is not None and x is None:
                raise ValueError(
                    f"policy.mmr_lambda={lam} with policy.k=None: MMR re-ranking needs k (the list length)"
                )
        for b, r in _pairs(beta, rho):
            if math.isinf(b) and r > 0:
                raise ValueError(
                    f"policy.rho={r} with policy.beta=inf: the diversity-aware objective needs a finite beta"
                )

    def check(self, n: int) -> None:
        """Refuse a list longer than the ``n`` creators (the checks that need ``n``).

        Raises:
            ValueError: ``k > n``.
        """
        k = [x for x in as_list(self.k, "policy.k", optional=True) or [] if x is not None]
        if k and max(k) > n:
            raise ValueError(f"policy.k={int(max(k))}: expected k <= n = {n} creators")

    def bind(self, replicas: int, n: int, device: torch.device, dtype: torch.dtype) -> BoundPolicy:
        """Resolve the parameters for ``replicas`` replicas of ``n`` creators.

        Raises:
            ValueError: a per-replica list of the wrong length, or ``k > n``.
        """
        self.check(n)
        return BoundPolicy(self, replicas, n, device, dtype)


def _pairs(a: list, b: list) -> list[tuple]:
    """Per-replica pairs of two parameter lists (a one-element list broadcasts; other lengths: none, the
    length mismatch is reported by ``bind``)."""
    if len(a) > 1 and len(b) > 1 and len(a) != len(b):
        return []
    size = max(len(a), len(b))
    return list(zip(a * (size // len(a)), b * (size // len(b)), strict=True))


@dataclass
class TopkDraw:
    """One step's top-k draws for a chunk of users, and the distributions they came from.

    Attributes:
        chosen: ``(R, c)`` int64 creators drawn.
        weights: ``(R, c, kmax)`` unnormalised weights of ``creators`` (zero past a replica's ``k``).
        creators: ``(R, c, kmax)`` int64 the best ``kmax`` creators of each user, in index order.
        total: ``(R, c, 1)`` the row sums of ``weights``.
        tied: ``(rows, cols)`` the users whose k-th score ties with the next one (more than ``k`` eligible;
            their draw and distribution are the full row's), or None.
        tied_weights: ``(t, n)`` those users' full-row weights, or None.
    """

    chosen: Tensor
    weights: Tensor
    creators: Tensor
    total: Tensor
    tied: tuple[Tensor, Tensor] | None = None
    tied_weights: Tensor | None = None


class BoundPolicy:
    """A policy with its parameters as ``(R, 1, 1)`` tensors; computes weights for chunks of users."""

    def __init__(self, policy: Policy, replicas: int, n: int, device: torch.device, dtype: torch.dtype):
        def values(v: PerReplica, name: str, off: float) -> list[float]:
            vals = as_list(v, f"policy.{name}", optional=True)
            vals = per_replica(vals if vals is not None else [off], replicas, f"policy.{name}")
            return [off if x is None else x for x in vals]  # None: off for that replica

        beta = values(policy.beta, "beta", 1.0)
        k = values(policy.k, "k", n)  # k = n is no truncation
        # tau = -1 admits every cosine; treat it as off so float rounding below -1 cannot exclude a creator
        tau = [-math.inf if t <= -1 else t for t in values(policy.tau, "tau", -math.inf)]
        eps = values(policy.eps, "eps", 0.0)
        rho = values(policy.rho, "rho", 0.0)
        self.n = n
        self.replicas = replicas
        self.inf = torch.tensor([math.isinf(b) for b in beta], device=device).view(-1, 1, 1)  # (R,1,1)
        self.any_inf = any(math.isinf(b) for b in beta)
        self.beta = column([0.0 if math.isinf(b) else b for b in beta], device, dtype)  # (R,1,1)
        self.need_shift = any(b > _NO_SHIFT_BETA for b in beta)
        self.finite_beta = not self.any_inf and not self.need_shift  # exp(beta s) needs no shift nor argmax
        self.k = torch.tensor([int(x) for x in k], device=device).view(-1, 1, 1)  # (R,1,1)
        self.kmax = int(max(x for x in k if x < n)) if any(x < n for x in k) else None
        groups: dict[int, list[int]] = {}
        for r, x in enumerate(k):
            if x < n:
                groups.setdefault(int(x), []).append(r)
        self.k_groups = {x: torch.tensor(rs, device=device) for x, rs in groups.items()}  # k -> replicas
        self.mmr = None
        if any(x is not None for x in as_list(policy.mmr_lambda, "policy.mmr_lambda", optional=True) or []):
            # lambda = 1 (plain relevance) for the replicas without re-ranking
            self.mmr = column(values(policy.mmr_lambda, "mmr_lambda", 1.0), device, dtype)
            self.kmax = int(max(k))
        self.tau = column(tau, device, dtype) if any(t > -math.inf for t in tau) else None
        self.eps = column(eps, device, dtype) if any(e > 0 for e in eps) else None
        self.rho = column(rho, device, dtype) if any(r > 0 for r in rho) else None
        self.rho_iters, self.rho_tol = policy.rho_iters, policy.rho_tol
        untouched = (  # no re-ranking, threshold, uniform mix, diversity term, infinite or huge beta
            self.mmr is None
            and self.tau is None
            and self.eps is None
            and self.rho is None
            and not self.any_inf
            and not self.need_shift
        )
        # plain softmax (nothing but a moderate beta): the engine folds beta into the score matmul
        self.plain_softmax = self.kmax is None and untouched
        # pure top-k (every replica truncated, nothing else): sample from the k-list without touching all n
        # (lists up to TOPK_LIST_MAX: a sorted torch.topk of a longer list costs more than the full rows)
        self.topk_only = all(x < n for x in k) and untouched and max(k) <= TOPK_LIST_MAX
        # the k-th value by the compiled kernel (rectest/sim/select.py: CPU, float32), else torch.topk
        self.native = select.available(device, dtype)
        # ... from candidate lists carried across steps (rectest/sim/toplists.py) where they are short enough, or
        # where the kernel is not there (for k <= NATIVE_LIST_MAX a list costs less than the kernel)
        use_lists = self.topk_only and not (self.native and self.kmax > NATIVE_LIST_MAX)
        self.list_length = list_length(self.kmax + 1, n) if use_lists else None
        # ... or from the compiled selection with hints carried across steps (the rows' candidates only)
        self.hinted = (
            self.topk_only and self.native and self.list_length is None and select.hints_pay(self.kmax, n)
        )
        # MMR lists alone (no threshold, uniform traffic or diversity term; a moderate beta): the compiled greedy
        # lists (rectest/sim/mmr.py) and the draw from them, without the (R, c, n) passes of _mmr_list
        self.mmr_native = (
            self.mmr is not None
            and self.tau is None
            and self.eps is None
            and self.rho is None
            and self.finite_beta
            and mmr_kernel.available(device, dtype)
        )
        # a batch that mixes kinds of policy (a k sweep with k = n, the frontier's families) is computed
        # part by part, each part with its own fast path: a replica's draws never depend on its companions
        mmr = as_list(policy.mmr_lambda, "policy.mmr_lambda", optional=True) or [None]
        mmr = per_replica(mmr, replicas, "policy.mmr_lambda")
        kinds: dict[tuple, list[int]] = {}
        for r in range(replicas):
            kind = (
                mmr[r] is not None,
                rho[r] > 0,
                tau[r] > -math.inf,
                eps[r] > 0,
                math.isinf(beta[r]),
                beta[r] > _NO_SHIFT_BETA,
                k[r] >= n and beta[r] <= REJECTION_MAX_BETA,  # a softmax that rejection sampling may draw
                # no list, a short one, one the list path takes, one too long for it
                0 if k[r] >= n else 1 if k[r] <= SHORT_LIST else 2 if k[r] <= TOPK_LIST_MAX else 3,
            )
            kinds.setdefault(kind, []).append(r)
        self._config = (policy, beta, k, tau, eps, rho, mmr, device, dtype)  # for subset()
        self.parts: list[tuple[Tensor, BoundPolicy]] | None = None
        self.spans: list[slice | None] = []  # per part: its replicas as a slice when they are consecutive
        if len(kinds) > 1 and not self.topk_only:  # (pure top-k lists share one list path)
            self.plain_softmax = False
            self.parts = [(torch.tensor(rs, device=device), self.subset(rs)) for rs in kinds.values()]
            # a part whose replicas are consecutive reads its rows as a view, without a copy
            self.spans = [
                slice(rs[0], rs[-1] + 1) if rs == list(range(rs[0], rs[-1] + 1)) else None
                for rs in kinds.values()
            ]
        # softmax with at most a threshold and uniform traffic, a moderate beta, one kind: drawn by rejection
        # when the engine's sampler is "rejection" (exact; without scoring every creator)
        self.rejects = (
            self.parts is None
            and self.kmax is None
            and self.mmr is None
            and self.rho is None
            and not self.any_inf
            and max(beta) <= REJECTION_MAX_BETA
            and n >= REJECTION_MIN_CREATORS
        )
        # top-k beyond the list path (or with a threshold or uniform traffic), a moderate beta, one kind: drawn by
        # the truncated draw from its score rows (select.draw_truncated: proposals uniform over the eligible
        # creators, no exp of every score; compiled on the CPU, the same draws in torch elsewhere) when the
        # engine's sampler is "rejection"
        self.draws_truncated = (
            self.parts is None
            and self.kmax is not None
            and not self.topk_only
            and self.mmr is None
            and self.rho is None
            and not self.any_inf
            and max(beta) <= REJECTION_MAX_BETA
            and n >= REJECTION_MIN_CREATORS
        )

    def subset(self, replicas: list[int]) -> BoundPolicy:
        """The same policy bound to some of its replicas only (in the given order).

        Args:
            replicas: replica indices of this policy.

        Returns:
            A policy over ``len(replicas)`` replicas whose ``r``-th is this policy's ``replicas[r]``.
        """
        policy, beta, k, tau, eps, rho, mmr, device, dtype = self._config
        sub = Policy(
            beta=[beta[r] for r in replicas],
            k=[int(k[r]) for r in replicas],
            tau=[None if tau[r] == -math.inf else tau[r] for r in replicas],
            eps=[eps[r] for r in replicas],
            rho=[rho[r] for r in replicas],
            mmr_lambda=[mmr[r] for r in replicas],
            rho_iters=policy.rho_iters,
            rho_tol=policy.rho_tol,
        )
        return BoundPolicy(sub, len(replicas), self.n, device, dtype)

    def kinds(self) -> list[tuple[list[int], BoundPolicy]]:
        """Each kind of policy with its replicas: the parts, or the whole batch when it has one kind."""
        if self.parts is None:
            return [(list(range(self.replicas)), self)]
        return [(rs.tolist(), part) for rs, part in self.parts]

    def top1_betas(self) -> list[float | None]:
        """Per replica: its beta if its draw is the argmax from the k-lists (k = 1 on the top-k list path; a
        tie at the top is drawn at random), else None."""
        beta = self._config[1]
        out: list[float | None] = [None] * self.replicas
        for rs, part in self.kinds():
            if part.topk_only:
                for i, r in enumerate(rs):
                    if int(part.k[i]) == 1:
                        out[r] = beta[r]
        return out

    def weights(self, scores: Tensor, creators: Tensor) -> Tensor:
        """Unnormalised recommendation weights for a chunk of users (``p = w / w.sum(-1)``).

        Args:
            scores: ``(R, c, n)`` the policy's scores of each creator for each user.
            creators: ``(R, n, d)`` the policy's view of the creators (used by MMR and rho).

        Returns:
            ``(R, c, n)`` weights ``>= 0`` with a positive sum in every row. ``scores`` is not modified.
        """
        if self.parts is not None:  # each kind of policy on its own replicas
            w = torch.empty_like(scores)  # (R, c, n)
            for (replicas, part), span in zip(self.parts, self.spans, strict=True):
                if span is not None:
                    w[span] = part.weights(scores[span], creators[span])
                else:
                    w.index_copy_(
                        0,
                        replicas,
                        part.weights(scores.index_select(0, replicas), creators.index_select(0, replicas)),
                    )
            return w
        if (
            self.native
            and self.kmax is not None
            and self.mmr is None
            and self.tau is None
            and self.finite_beta
        ):
            # the compiled selection writes the mask and beta * s in one pass
            w, fallback = select.top_weights(scores, self.k.view(-1, 1), self.beta.view(-1, 1)), None
        else:
            keep, fallback = self._eligible(scores, creators)  # (R, c, n) 0/1 or None, (R, c, 1) 0/1 or None
            w = self._softmax_weights(scores, keep, fallback)  # (R, c, n)
            del keep
        if self.rho is not None:
            w = self._diversity_aware(scores, creators, w, fallback)
        return self._mix_uniform(w)

    def weights_above(self, scores: Tensor, thresholds: Tensor) -> Tensor:
        """:meth:`weights` of a ``draws_truncated`` policy from each row's eligibility threshold (the
        truncated draw's, ``max(kth, tau)``): the same floats, without selecting the k-th scores again.

        Args:
            scores: ``(R, c, n)`` the policy's scores.
            thresholds: ``(R, c)`` each row's threshold.

        Returns:
            ``(R, c, n)`` weights, bit for bit those of :meth:`weights`.
        """
        w = torch.mul(scores, self.beta).exp_().mul_(_at_least(scores, thresholds.unsqueeze(-1)))  # (R, c, n)
        if self.tau is not None:  # a row with nothing eligible: uniform over all creators
            w = torch.where(w.amax(-1, keepdim=True) > 0, w, torch.ones_like(w))
        return self._mix_uniform(w)

    def _mix_uniform(self, w: Tensor) -> Tensor:
        """Uniform traffic mixed into the ``(R, c, n)`` weights ``w``: ``(1 - eps) w + eps sum(w) / n``."""
        if self.eps is None:
            return w
        total = w.sum(-1, keepdim=True)  # (R, c, 1)
        return (1 - self.eps) * w + self.eps * total / self.n

    def probabilities(self, scores: Tensor, creators: Tensor) -> Tensor:
        """Normalised probabilities ``(R, c, n)`` for a chunk of users (see :meth:`weights`)."""
        w = self.weights(scores, creators)
        return w / w.sum(-1, keepdim=True).expand_as(w)  # (expanded: a (R, c, 1) divisor is 15x slower)

    def sample_top_k(self, scores: Tensor, uniforms: Tensor, lists: Tensor | None = None) -> Tensor:
        """``(R, c)`` int64 creators drawn from the k-lists only: :meth:`draw_top_k`'s choices."""
        return self.draw_top_k(scores, uniforms, lists).chosen

    def draw_top_k(
        self, scores: Tensor, uniforms: Tensor, lists: Tensor | None = None, hints: Tensor | None = None
    ) -> TopkDraw:
        """Pure top-k sampling from the k-lists only (``topk_only`` policies): the same inverse-CDF draw as
        :meth:`weights` followed by ``sample_inverse_cdf`` (the list is put back in index order), up to
        float rounding, without an ``exp`` and a cumulative sum over all ``n`` creators.

        A user whose k-th score ties with the next one has more than ``k`` eligible creators (every tie is
        eligible, as in :meth:`weights`): those rows alone are drawn from their full rows, exactly as the
        general path draws them.

        Args:
            scores: ``(R, c, n)`` the policy's scores.
            uniforms: ``(R, c)`` draws in ``[0, 1)``.
            lists: ``(R, c, list_length)`` int32 candidate lists of these users, refreshed in place
                (:func:`~rectest.sim.toplists.top_entries`; the draws do not depend on them), or None.
            hints: ``(R, c)`` contiguous float32 selection hints of these users for the compiled selection,
                refreshed in place (:func:`~rectest.sim.select.select`; the draws do not depend on them), or None.

        Returns:
            The choices and the distribution they were drawn from (:class:`TopkDraw`).
        """
        kmax = self.kmax
        vals = None  # (R, c, kmax + 1) the lists' best scores, descending (None: the selection's entries)
        if self.native and lists is None:  # the compiled selection: the k-th value, the top k in index order
            kth, count, idx, logits = select.select_logits(
                scores, self.k.view(-1, 1), kmax, self.beta.view(-1, 1), hints
            )  # (R, c), (R, c), (R, c, kmax), (R, c, kmax) beta s at idx
            tied = count > self.k.view(-1, 1)  # (R, c): more than k eligible
            kth = kth.unsqueeze(-1)  # (R, c, 1)
            w = logits.exp_()  # (R, c, kmax)
        else:  # torch.topk of the candidate lists (or of the full rows)
            vals, idx = top_entries(scores, kmax + 1, lists)  # (R, c, kmax + 1), sorted descending
            w = torch.mul(vals[..., :kmax], self.beta).exp_()  # (R, c, kmax), as in weights()
            idx = idx[..., :kmax]
        if toplists.draw_available(w):  # the mask, the order and the draw in one compiled pass a row
            chosen, w, idx, total, kth_, tied_ = toplists.draw(w, idx, self.k, uniforms, vals)
            if vals is not None:
                kth, tied = kth_, tied_
        else:
            w = w * (torch.arange(kmax, device=scores.device).view(1, 1, -1) < self.k)  # (zero past k)
            if vals is not None:
                k = self.k.expand(-1, scores.shape[1], 1)  # (R, c, 1)
                kth = vals.gather(-1, k - 1)  # (R, c, 1)
                tied = (kth == vals.gather(-1, k)).squeeze(-1)  # (R, c): more than k eligible
                idx, order = idx.sort(-1)  # back to index order, as in the full-row CDF
                w = w.gather(-1, order)
            cdf = w.cumsum(-1)  # (R, c, kmax)
            total = cdf[..., -1:]  # (R, c, 1)
            target = uniforms.to(cdf.dtype).unsqueeze(-1) * total  # (R, c, 1)
            pos = torch.searchsorted(cdf, target, right=True).clamp_max_(kmax - 1)  # (R, c, 1)
            chosen = idx.gather(-1, pos).squeeze(-1)  # (R, c)
        draw = TopkDraw(chosen, w, idx, total)
        if bool(tied.any()):
            r, c = tied.nonzero(as_tuple=True)  # (t,), (t,)
            rows = scores[r, c]  # (t, n)
            full = torch.mul(rows, self.beta[r, 0]).exp_().mul_(_at_least(rows, kth[r, c]))  # as in weights()
            chosen[r, c] = sample_inverse_cdf(full, uniforms[r, c])[0]
            draw.tied, draw.tied_weights = (r, c), full
        return draw

    def draw_mmr(self, scores: Tensor, creators_t: Tensor, uniforms: Tensor) -> TopkDraw:
        """MMR sampling from the compiled greedy lists (``mmr_native`` policies): the same inverse-CDF draw as
        :meth:`weights` followed by ``sample_inverse_cdf`` over the list (in index order), without the
        ``(R, c, n)`` passes of the torch lists.

        Args:
            scores: ``(R, c, n)`` the policy's scores.
            creators_t: ``(R, d, n)`` the policy's view of the creators, transposed.
            uniforms: ``(R, c)`` draws in ``[0, 1)``.

        Returns:
            The choices and the lists' weights (:class:`TopkDraw`, no ties).
        """
        idx = mmr_kernel.lists(scores, creators_t, self.k, self.mmr)  # (R, c, kmax) in index order
        w = torch.mul(scores.gather(-1, idx), self.beta).exp_()  # (R, c, kmax) as in weights()
        chosen, w, idx, total, _, _ = toplists.draw(w, idx, self.k, uniforms)
        return TopkDraw(chosen, w, idx, total)

    # -- truncation -------------------------------------------------------------------------------------
    def _eligible(self, scores: Tensor, creators: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Eligible creators as a float 0/1 mask ``(R, c, n)`` (None = all), and the ``(R, c, 1)`` 0/1
        rows that fall back to uniform (None = none). Masks are floats: bool masking is slow on CPU."""
        keep = None
        if self.mmr is not None:
            keep = self._mmr_list(scores, creators)
        elif self.kmax is not None and self.native:  # the compiled selection writes the mask (k = n: all 1)
            keep = select.top_mask(scores, self.k.view(-1, 1))[0]
        elif self.kmax is not None:
            keep = _at_least(scores, self._kth_largest(scores))  # ties at the k-th score are all eligible
        if self.tau is None:
            return keep, None
        above = _at_least(scores, self.tau)  # (R, c, n)
        keep = above if keep is None else keep * above
        fallback = 1 - keep.amax(-1, keepdim=True)  # (R, c, 1): 1 where nothing is eligible
        return keep.add_(fallback), fallback  # (keep is this call's own tensor)

    def _kth_largest(self, scores: Tensor) -> Tensor:
        """``(R, c, 1)`` the k-th largest score of each row (``-inf`` for untruncated replicas)."""
        R, c, _ = scores.shape
        thr = torch.full((R, c, 1), -math.inf, dtype=scores.dtype, device=scores.device)
        for k, replicas in self.k_groups.items():
            rows = scores if len(replicas) == R else scores.index_select(0, replicas)  # (R', c, n)
            if k == 1:
                kth = rows.amax(-1, keepdim=True)
            else:
                kth = rows.topk(k, dim=-1, sorted=False).values.amin(-1, keepdim=True)
            if len(replicas) == R:
                thr = kth
            else:
                thr.index_copy_(0, replicas, kth)
        return thr

    def _mmr_list(self, scores: Tensor, creators: Tensor) -> Tensor:
        """Greedy MMR list of ``k`` creators per user: ``(R, c, n)`` 0/1 mask."""
        picked = torch.zeros_like(scores)  # (R, c, n)
        maxsim = None
        d = creators.shape[-1]
        for step in range(self.kmax):
            cand = scores if maxsim is None else self.mmr * scores - (1 - self.mmr) * maxsim
            pick = (cand - 8 * picked).argmax(-1, keepdim=True)  # (R, c, 1); picked ones drop below -5
            active = (self.k > step).to(scores.dtype).expand_as(pick)  # list length reached: no pick
            picked.scatter_(-1, pick, torch.maximum(picked.gather(-1, pick), active))
            vec = creators.gather(1, pick.expand(-1, -1, d))  # (R, c, d)
            sim = vec @ creators.transpose(1, 2)  # (R, c, n)
            maxsim = sim if maxsim is None else torch.maximum(maxsim, sim)
        return picked

    # -- base distributions -----------------------------------------------------------------------------
    def _softmax_weights(self, scores: Tensor, keep: Tensor | None, fallback: Tensor | None) -> Tensor:
        """``exp(beta (s - shift))`` on eligible creators, one-hot argmax for ``beta = inf``."""
        masked = None
        if keep is not None and (self.need_shift or self.any_inf):
            masked = scores + (keep - 1) * 4  # (R, c, n): ineligible scores drop below -3 (max / argmax only)
        if self.need_shift:
            shift = (scores if masked is None else masked).amax(-1, keepdim=True)  # (R, c, 1): stable
            shift = torch.where(self.beta > _NO_SHIFT_BETA, shift, torch.zeros_like(shift))
            w = torch.sub(scores, shift).mul_(self.beta).exp_()  # (R, c, n), one temporary
        else:
            w = torch.mul(scores, self.beta).exp_()  # (R, c, n): beta <= 40, no shift needed
        if keep is not None:
            w.mul_(keep)
        if fallback is not None:
            w = w.mul_(1 - fallback).add_(fallback)  # uniform over all creators where nothing is eligible
        if self.any_inf:
            top = (scores if masked is None else masked).argmax(-1, keepdim=True)  # (R, c, 1), first maximum
            onehot = torch.zeros_like(w).scatter_(-1, top, 1.0)
            if fallback is not None:
                onehot = onehot * (1 - fallback) + fallback
            w = torch.where(self.inf, onehot, w)
        return w

    def _diversity_aware(
        self, scores: Tensor, creators: Tensor, w: Tensor, fallback: Tensor | None
    ) -> Tensor:
        """Damped fixed-point iteration of the diversity-aware objective, starting from softmax ``w``.

        The target depends on ``p`` only through ``vbar = V^T p``, so the damped step
        ``p <- (1 - a) p + a T(p)`` moves ``vbar`` by ``a (V^T T(p) - vbar)``: a gradient step on the dual
        ``phi(vbar) = (1/beta) logsumexp(beta (s - 2 rho V vbar)) + rho ||vbar||^2``, which is strongly convex
        with curvature at most ``2 rho (1 + 2 beta rho)``. The damping ``a = 1 / (1 + 2 beta rho)`` is that
        gradient descent's safe step, so the iteration converges for every rho and beta (a fixed ``a = 1/2``
        oscillates once ``2 beta rho > 1``). Each user stops on its own once no probability moves by more
        than ``rho_tol``, so a user's result depends on nothing but its own row.

        On the CPU in float32 the compiled kernel (``rho.c``) iterates each row while it stays in the cache.
        Elsewhere rows go through every iteration in tiles of about ``RHO_TILE_ELEMENTS`` probabilities, which
        stay in the cache between iterations. ``T(p)`` drops the constant ``rho`` of ``rho (1 - 2 V vbar)`` (softmax
        ignores it). Rows that fall back to uniform (nothing eligible) and replicas with ``rho = 0`` keep
        ``p``: their target is ``p`` itself.
        """
        R, c, n = scores.shape
        creators_t = creators.transpose(1, 2).contiguous()  # (R, d, n)
        step = 1 / (1 + 2 * self.beta * self.rho)  # (R, 1, 1)
        coef = -2 * self.beta * self.rho  # (R, 1, 1)
        total = w.sum(-1, keepdim=True).expand_as(w)  # (R, c, n) expanded: a (R, c, 1) divisor is 15x slower
        out = w / total  # (R, c, n) the plain softmax, iterated in place tile by tile
        if rho_kernel.available(scores.device, scores.dtype):  # row by row in cache (rectest/sim/rho.c)
            moving = (self.rho > 0).view(R, 1) & out.sum(-1).isfinite()  # (R, c) (a NaN row is left as is)
            if fallback is not None:
                moving &= fallback.view(R, c) == 0
            rho_kernel.iterate(
                out, scores, creators_t, self.beta, self.rho, moving, self.rho_iters, self.rho_tol
            )
            return out
        tiles = max(1, -(-c // max(1, RHO_TILE_ELEMENTS // (R * n))))  # balanced: no small last tile
        rows = -(-c // tiles)
        for a in range(0, c, rows):
            p = out[:, a : a + rows]  # (R, t, n) a view
            base = torch.mul(scores[:, a : a + rows], self.beta)  # (R, t, n) beta s
            base.masked_fill_(p == 0, -math.inf)  # off the eligible set (and where the softmax underflowed)
            moving = (self.rho > 0).to(p.dtype).expand(R, p.shape[1], 1)  # (R, t, 1) 1 while not converged
            if fallback is not None:
                moving = moving * (1 - fallback[:, a : a + rows])
            for _ in range(self.rho_iters):
                if not bool(moving.any()):
                    break
                vbar = torch.bmm(p, creators).mul_(coef)  # (R, t, d): -2 beta rho vbar
                diff = torch.baddbmm(base, vbar, creators_t).softmax(-1).sub_(p)  # (R, t, n): T(p) - p
                change = diff.abs().amax(-1, keepdim=True)  # (R, t, 1)
                p.addcmul_(diff, step * moving)  # p <- p + a (T(p) - p) on the moving rows
                moving = moving * (change >= self.rho_tol)
        return out


def _at_least(scores: Tensor, threshold: Tensor) -> Tensor:
    """Float 0/1 mask ``scores >= threshold`` (``sign(x) + 1`` clamped to 1; avoids slow bool masks)."""
    return (scores - threshold).sign_().add_(1).clamp_max_(1)
