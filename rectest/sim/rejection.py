"""Exact rejection sampling for softmax and threshold policies: a draw without scoring every creator.

A cosine is at most 1, so ``exp(beta (s - 1)) <= 1`` is a valid acceptance probability: a creator proposed
uniformly at random and accepted with it (and only if eligible, ``s >= tau``) is distributed exactly as
softmax(beta) over the eligible creators. Each user gets ``PROPOSALS`` proposals a step and takes the first
accepted one; a user who rejects them all is drawn from its full row with the policy's own weights, exactly
as the general path draws (this also covers a user with no eligible creator, who gets a uniform one). Both
branches draw from the policy's distribution, so the sampler is exact, not an approximation
(``tests/sim/test_rejection.py`` checks it against the dense probabilities).

Uniform traffic (``eps``) is a mixture: the step's own uniform ``u`` (the one the full-row draw would invert)
gives a user a uniformly random creator ``floor(u / eps n)`` when ``u < eps``, and otherwise the softmax draw
above (a fallback inverts ``(u - eps) / (1 - eps)``, again uniform): exactly ``(1 - eps) p + eps / n``.

Expected cost per user: ``1 / a`` proposals of ``d`` flops, with ``a`` the mean of ``exp(beta (s - 1))`` over
the creators (about ``e^-1`` for ``beta = 1``), against ``n d`` flops and ``n`` exps for the full row. The
randomness is fixed per step: one float64 uniform ``u`` per proposal gives the creator ``floor(u n)`` and the
acceptance uniform ``frac(u n)``, drawn from the replica's own generator for every user, so a replica's draws
do not depend on its companions, the chunking, the sharding or how many proposals were needed.

Top-k replicas beyond the candidate lists (and top-k with a threshold or uniform traffic) are drawn from their
score rows by :func:`draw_truncated`: the same proposal uniforms, but uniform over each user's eligible creators
(:func:`rectest.sim.select.draw_truncated`, compiled on the CPU and the same draws in torch elsewhere), so no exp
of every score.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from rectest.sim import select
from rectest.sim.policies import BoundPolicy
from rectest.sim.sampling import sample_inverse_cdf

PROPOSALS = 16  # per user per step: at beta = 1 and cosines near 0, about 1 user in 1,500 falls back
FIRST_ROUND = 4  # proposals scored for every user; the rest only for users who rejected these
PROPOSAL_ELEMENTS = 1 << 22  # users per chunk: at most this many proposal coordinates at once
NAN_SCORE = -2  # a user one of whose proposals scored NaN (reported as -1 once the fallback has run)


def rejected_replicas(policy: BoundPolicy) -> list[tuple[Tensor, BoundPolicy]]:
    """The replicas rejection sampling draws (with the sampler ``"rejection"``), each part with its policy."""
    if policy.rejects:
        return [(torch.arange(policy.beta.shape[0], device=policy.beta.device), policy)]
    return [(replicas, part) for replicas, part in policy.parts or [] if part.rejects]


def draw_proposals(generator: torch.Generator, out: Tensor) -> Tensor:
    """Fill ``out`` ``(users, PROPOSALS)`` float64 with uniforms in ``[0, 1)`` from one replica's generator."""
    return out.uniform_(generator=generator)


def sample_by_rejection(
    policy: BoundPolicy, users: Tensor, creators: Tensor, draws: Tensor, uniforms: Tensor, chunk_rows: int
) -> Tensor:
    """One creator per user, drawn exactly from the policy's distribution (``policy.rejects`` must hold).

    Args:
        policy: a softmax policy with at most a threshold and uniform traffic, ``beta <= REJECTION_MAX_BETA``,
            ``R`` replicas.
        users: ``(R, m, d)`` the policy's view of the users (unit vectors).
        creators: ``(R, n, d)`` the policy's view of the creators (unit vectors).
        draws: ``(R, m, PROPOSALS)`` float64 proposal uniforms (:func:`draw_proposals`).
        uniforms: ``(R, m)`` the step's inverse-CDF uniforms, used by users who reject every proposal.
        chunk_rows: users per chunk of the full-row fallback (bounds its ``(R, rows, n)`` temporaries).

    Returns:
        ``(R, m)`` int64 creator indices; ``-1`` for a user whose scores hold a NaN.
    """
    R, m, d = users.shape
    n = creators.shape[1]
    flat_creators = creators.reshape(R * n, d)  # (R n, d): replica r's creator i at r n + i
    beta = policy.beta.view(R, 1)  # (R, 1)
    tau = None if policy.tau is None else policy.tau.view(R, 1)
    chosen = torch.empty(R, m, dtype=torch.long, device=users.device)
    step = max(1, PROPOSAL_ELEMENTS // (R * PROPOSALS * d))
    for a in range(0, m, step):
        b = min(m, a + step)
        replica = torch.arange(R, device=users.device).repeat_interleave(b - a)  # (R c,) each user's replica
        u = users[:, a:b].flatten(0, 1)  # (R c, d)
        base = (replica * n).unsqueeze(1)  # (R c, 1) the row of the user's replica's creator 0
        rb, rt = beta[replica], None if tau is None else tau[replica]  # (R c, 1)
        proposals = draws[:, a:b].flatten(0, 1)  # (R c, PROPOSALS)
        pick = _first_accepted(u, flat_creators, n, base, rb, rt, proposals[:, :FIRST_ROUND])  # (R c,)
        late = (pick == -1).nonzero().squeeze(1)  # (t,) users who rejected the first round
        if late.numel():
            pick[late] = _first_accepted(
                u[late],
                flat_creators,
                n,
                base[late],
                rb[late],
                None if rt is None else rt[late],
                proposals[late, FIRST_ROUND:],
            )
        chosen[:, a:b] = pick.view(R, b - a)
    if policy.eps is not None:  # uniform traffic: u < eps gives a uniform creator, the rest the softmax draw
        mixed, spread, uniforms = split_uniform_traffic(policy.eps, uniforms, n)
        chosen = torch.where(mixed & (chosen != NAN_SCORE), spread, chosen)
        policy = copy.copy(policy)
        policy.eps = None  # the fallback draws from the softmax part alone
    _fall_back(policy, users, creators, uniforms, chunk_rows, chosen)
    return chosen.masked_fill_(chosen == NAN_SCORE, -1)


def split_uniform_traffic(eps: Tensor, uniforms: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Uniform traffic as a mixture drawn from the step's uniforms: ``u < eps`` gives the uniform creator
    ``floor(u / eps n)``, and the rest the policy's own draw from ``(u - eps) / (1 - eps)`` (uniform given
    ``u >= eps``): exactly ``(1 - eps) p + eps / n``.

    Args:
        eps: ``(R, 1, 1)`` uniform-traffic weights.
        uniforms: ``(R, c)`` the step's uniforms.
        n: creators.

    Returns:
        ``(R, c)`` bool the users given a uniform creator, ``(R, c)`` int64 that creator, and ``(R, c)`` the
        uniforms for the policy's own draw.
    """
    eps = eps.view(-1, 1)  # (R, 1)
    mixed = uniforms < eps  # (R, c)
    spread = (uniforms / eps * n).floor_().long().clamp_(0, n - 1)  # (R, c) uniform on [0, n)
    rest = torch.where(mixed, 0, (uniforms - eps) / (1 - eps)).clamp_(0, 1)  # (R, c) uniform given u >= eps
    return mixed, spread, rest


def draw_truncated(
    policy: BoundPolicy, scores: Tensor, uniforms: Tensor, proposals: Tensor
) -> tuple[Tensor, Tensor]:
    """One creator per user from its score row, exactly from the policy's distribution
    (``policy.draws_truncated`` must hold): the truncated draw (:func:`rectest.sim.select.draw_truncated`:
    proposals uniform over the eligible creators, accepted with ``exp(beta (s - smax))``), mixed with uniform
    traffic.

    Args:
        policy: a top-k policy with at most a threshold and uniform traffic, ``R`` replicas.
        scores: ``(R, c, n)`` scores of a chunk of users.
        uniforms: ``(R, c)`` the step's uniforms of these users (used by uniform traffic and by users who reject
            every proposal).
        proposals: ``(R, c, PROPOSALS)`` float64 proposal uniforms (:func:`draw_proposals`).

    Returns:
        ``(R, c)`` int64 creator indices (``-1`` for a user whose scores hold a NaN), and ``(R, c)`` each user's
        eligibility threshold (:meth:`~rectest.sim.policies.BoundPolicy.weights_above` gives the weights).
    """
    n = scores.shape[-1]
    mixed = spread = None
    if policy.eps is not None:
        mixed, spread, uniforms = split_uniform_traffic(policy.eps, uniforms, n)
    tau = policy.tau.view(-1, 1) if policy.tau is not None else -math.inf
    chosen, thresholds = select.draw_truncated(
        scores, policy.k.view(-1, 1), tau, policy.beta.view(-1, 1), uniforms, proposals
    )  # (R, c), (R, c)
    if mixed is not None:
        chosen = torch.where(mixed & (chosen >= 0), spread, chosen)
    return chosen, thresholds


def _first_accepted(
    users: Tensor,
    flat_creators: Tensor,
    n: int,
    base: Tensor,
    beta: Tensor,
    tau: Tensor | None,
    draws: Tensor,
) -> Tensor:
    """The creator of each user's first accepted proposal, -1 if none.

    Args:
        users: ``(t, d)`` unit vectors.
        flat_creators: ``(R n, d)`` every replica's creators, replica ``r``'s from row ``r n``.
        n: creators per replica.
        base: ``(t, 1)`` the row of each user's replica's creator 0.
        beta, tau: ``(t, 1)`` each user's policy (tau None: no threshold).
        draws: ``(t, L)`` float64 uniforms: proposal ``floor(u n)``, acceptance uniform ``frac(u n)``.

    Returns:
        ``(t,)`` int64 creator indices in ``[0, n)``, -1 if none was accepted, ``NAN_SCORE`` if a proposal scored NaN.
    """
    scaled = draws * n  # (t, L)
    whole = scaled.floor()
    accept_u = scaled.sub_(whole)  # (t, L) acceptance uniforms
    idx = whole.long().clamp_max_(n - 1)  # (t, L) proposed creators
    t, L = idx.shape
    candidates = flat_creators.index_select(0, (idx + base).flatten()).view(t, L, -1)  # (t, L, d)
    s = (candidates @ users.unsqueeze(-1)).squeeze(-1)  # (t, L) cosines
    accept = s.sub(1).mul_(beta).exp_()  # (t, L) exp(beta (s - 1)) in (0, 1]
    if tau is not None:
        accept.mul_(s >= tau)  # ineligible creators are never accepted
    ok = accept_u < accept.double()  # (t, L)
    first = ok.to(torch.uint8).argmax(-1, keepdim=True)  # (t, 1) the first accepted (0 when none)
    pick = torch.where(ok.any(-1), idx.gather(-1, first).squeeze(-1), -1)
    return torch.where(s.isnan().any(-1), NAN_SCORE, pick)  # (a NaN score: reported, not skipped)


def _fall_back(
    policy: BoundPolicy, users: Tensor, creators: Tensor, uniforms: Tensor, rows: int, chosen: Tensor
) -> None:
    """Draw the users still at -1 in ``chosen`` from their full rows, with the policy's weights (in place)."""
    r, j = (chosen == -1).nonzero(as_tuple=True)  # (t,) each, sorted by replica
    if not r.numel():
        return
    R, _, d = users.shape
    counts = torch.bincount(r, minlength=R)  # (R,)
    slot = (
        torch.arange(r.numel(), device=r.device) - (counts.cumsum(0) - counts)[r]
    )  # (t,) row in its replica
    width = int(counts.max())
    packed = users.new_zeros(R, width, d)  # (R, w, d); padding rows score 0 and are dropped
    packed[r, slot] = users[r, j]
    u = uniforms.new_zeros(R, width)
    u[r, slot] = uniforms[r, j]
    picks = torch.empty(R, width, dtype=torch.long, device=users.device)
    creators_t = creators.transpose(1, 2).contiguous()  # (R, d, n)
    # with a threshold, the truncated draw exps the eligible scores alone (the users who fall back are those with
    # few creators above tau); without one, torch's full-row draw (the softmax's draws stay as they were). A user
    # whose scores hold a NaN gets -1 (the engine reports it).
    for a in range(0, width, max(1, rows)):
        b = min(width, a + max(1, rows))
        scores = packed[:, a:b] @ creators_t  # (R, c, n)
        if policy.tau is not None:
            tau, beta = policy.tau.view(-1, 1), policy.beta.view(-1, 1)
            picks[:, a:b] = select.draw_truncated(scores, scores.shape[-1], tau, beta, u[:, a:b], None)[0]
        else:
            w = policy.weights(scores, creators)  # (R, c, n) as the general path's
            pick, total = sample_inverse_cdf(w, u[:, a:b])  # (R, c), (R, c, 1)
            ok = (torch.isfinite(total) & (total > 0)).squeeze(-1)  # (R, c)
            picks[:, a:b] = torch.where(ok, pick, -1)
    chosen[r, j] = picks[r, slot]
