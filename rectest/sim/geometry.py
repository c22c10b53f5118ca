"""Geometry of a simulation state: how learned vectors differ from the paper's i.i.d. uniform world, the
transforms that change it, and the poles of a (nearly) bi-polarized final state.

Three jobs, all pure torch:

1. :func:`start_geometry` measures a starting state (mean directions, negative scores, effective rank,
   CD and TP) and :func:`iid_reference` gives what i.i.d. uniform unit vectors of the same ``m, n, d``
   would give (closed forms).
2. :func:`transform_start` applies a named transform (``none``, ``center``, ``whiten``, ``whiten_each``)
   to the vectors the simulation starts from.
3. :func:`poles` finds the principal axis of a final state and the fraction of users and creators on each
   side; :func:`bipolar_prediction` gives the CD / TP / RR / RD of the exact bi-polarized state with
   those fractions (the closed forms of the spec, section 6, generalised to unbalanced poles, top-k,
   threshold and uniform traffic).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from rectest.sim.measures import pairwise_diversity_and_polarization
from rectest.sim.scoring import normalize

TRANSFORMS = ("none", "center", "whiten", "whiten_each")
_EIG_FLOOR = 1e-6  # relative floor on covariance eigenvalues before inverting them (whitening)


# -- closed forms for i.i.d. uniform vectors on S^{d-1} ---------------------------------------------------
def iid_mean_distance(d: int) -> float:
    """``E ||x - y||`` for independent uniform ``x, y`` on ``S^{d-1}``: the expected CD of an i.i.d. world.

    ``2^(d-1) Gamma(d/2)^2 / (sqrt(pi) Gamma(d - 1/2))`` (``4/pi`` for ``d = 2``, ``4/3`` for ``d = 3``).
    """
    log = (d - 1) * math.log(2) + 2 * math.lgamma(d / 2) - 0.5 * math.log(math.pi) - math.lgamma(d - 0.5)
    return math.exp(log)


def iid_abs_cosine(d: int) -> float:
    """``E |<x, y>|`` for independent uniform unit vectors: ``Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))``."""
    return math.exp(math.lgamma(d / 2) - 0.5 * math.log(math.pi) - math.lgamma((d + 1) / 2))


def iid_reference(m: int, n: int, d: int) -> dict[str, float]:
    """What i.i.d. uniform unit vectors of the same shape give for each measure of :func:`start_geometry`.

    Closed forms: ``CD = E||x - y||``; ``TP = E|cos| (1 - 1/n) + 1/n`` (the diagonal counts 1);
    ``negative_scores = 1/2``; ``mean_user_norm = 1/sqrt(m)`` and ``mean_creator_norm = 1/sqrt(n)``
    (the root of ``E ||mean||^2 = 1/N``); ``mean_cosine = 0``; effective rank ``(N - 1) d / (N + d - 2)``,
    the participation ratio ``tr(C)^2 / tr(C^2)`` of the sample covariance ``C`` of ``N`` i.i.d. unit
    vectors with expectations in place of both traces (``N - 1`` effective samples after centring; exact
    for ``N = 2``, within a few percent for ``N >= d``).
    """

    def rank(count: int) -> float:
        return (count - 1) * d / (count + d - 2) if count > 1 else 0.0

    return {
        "CD": iid_mean_distance(d) if n > 1 else 0.0,
        "TP": iid_abs_cosine(d) * (1 - 1 / n) + 1 / n,
        "mean_user_norm": 1 / math.sqrt(m),
        "mean_creator_norm": 1 / math.sqrt(n),
        "mean_cosine": 0.0,
        "negative_scores": 0.5,
        "effective_rank_users": rank(m),
        "effective_rank_creators": rank(n),
    }


# -- measures of a state ---------------------------------------------------------------------------------
def effective_rank(x: Tensor) -> float:
    """Participation ratio ``(sum_k l_k)^2 / sum_k l_k^2`` of the covariance spectrum of the rows of ``x``.

    ``d`` for an isotropic cloud, ``1`` for points on a line. Args: ``x``: ``(N, d)``.
    """
    x = x.double()
    centred = x - x.mean(0, keepdim=True)
    eig = torch.linalg.eigvalsh(centred.T @ centred / max(1, x.shape[0] - 1)).clamp_min(0)  # (d,)
    total = float(eig.sum())
    return total * total / float((eig * eig).sum()) if total > 0 else 0.0


def _chunks(rows: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, rows, max(1, chunk)):
        yield start, min(rows, start + max(1, chunk))


def negative_score_fraction(users: Tensor, creators: Tensor, chunk: int = 4096) -> float:
    """Fraction of user-creator pairs with a negative score ``<u_j, v_i> < 0``. ``(m, d)``, ``(n, d)``."""
    negative = 0
    for a, b in _chunks(users.shape[0], chunk):
        negative += int(((users[a:b] @ creators.T) < 0).sum())
    return negative / (users.shape[0] * creators.shape[0])


def start_geometry(users: Tensor, creators: Tensor, chunk: int = 4096) -> dict[str, float]:
    """Geometry of one state: the quantities of :func:`iid_reference`, measured.

    Args:
        users: ``(m, d)`` unit vectors.
        creators: ``(n, d)`` unit vectors.
        chunk: rows per chunk of the pairwise computations.

    Returns:
        ``CD``, ``TP`` (the creators'), ``mean_user_norm`` and ``mean_creator_norm`` (norms of the mean
        vectors), ``mean_cosine`` (cosine between the two means), ``negative_scores`` (fraction of
        ``s_ij < 0``), ``effective_rank_users``, ``effective_rank_creators``.
    """
    mu, mc = users.double().mean(0), creators.double().mean(0)  # (d,), (d,)
    cosine = float(mu @ mc / (mu.norm() * mc.norm())) if float(mu.norm() * mc.norm()) > 0 else 0.0
    cd, tp = pairwise_diversity_and_polarization(creators.unsqueeze(0), chunk)
    return {
        "CD": float(cd[0]),
        "TP": float(tp[0]),
        "mean_user_norm": float(mu.norm()),
        "mean_creator_norm": float(mc.norm()),
        "mean_cosine": cosine,
        "negative_scores": negative_score_fraction(users, creators, chunk),
        "effective_rank_users": effective_rank(users),
        "effective_rank_creators": effective_rank(creators),
    }


def top_overlap(
    a_users: Tensor, a_creators: Tensor, b_users: Tensor, b_creators: Tensor, k: int = 10
) -> float:
    """Mean fraction of each user's top-``k`` creators under scores ``a`` that stay top-``k`` under ``b``.

    How much a transform keeps of the ranking users see: 1 when it keeps every user's top-``k`` list.
    Shapes: ``(m, d)``, ``(n, d)``, ``(m, d')``, ``(n, d')``.
    """
    k = min(k, a_creators.shape[0])
    kept = 0.0
    for s, e in _chunks(a_users.shape[0], 1024):
        top_a = (a_users[s:e] @ a_creators.T).topk(k, -1).indices  # (c, k)
        top_b = (b_users[s:e] @ b_creators.T).topk(k, -1).indices  # (c, k)
        kept += float((top_a.unsqueeze(-1) == top_b.unsqueeze(-2)).any(-1).sum())
    return kept / (a_users.shape[0] * k)


# -- transforms of the starting vectors ------------------------------------------------------------------
def _whitener(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(mean (d,), W (d, d))`` with ``W = C^{-1/2}`` of the rows' covariance ``C`` (float64)."""
    mean = x.mean(0)
    centred = x - mean
    eig, vec = torch.linalg.eigh(centred.T @ centred / max(1, x.shape[0] - 1))
    eig = eig.clamp_min(float(eig.max()) * _EIG_FLOOR)
    return mean, vec @ torch.diag(eig.rsqrt()) @ vec.T


def transform_start(users: Tensor, creators: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Apply a geometry transform to the starting vectors; rows are re-normalised to the sphere.

    Args:
        users: ``(m, d)`` vectors.
        creators: ``(n, d)`` vectors.
        kind: ``none`` (unchanged); ``center`` (subtract the mean user from the users and the mean creator
            from the creators); ``whiten`` (subtract the joint mean of users and creators and map by the
            inverse square root of their joint covariance: one linear map for both, so the sign of
            every score is measured against a common centre); ``whiten_each`` (centre and whiten users and
            creators each by their own mean and covariance: both clouds become isotropic, like the
            paper's i.i.d. world).

    Returns:
        ``(users, creators)`` unit vectors in the input dtype.

    Raises:
        ValueError: an unknown ``kind``, or a transform that leaves a zero vector.
    """
    if kind not in TRANSFORMS:
        raise ValueError(f"transform={kind!r}: expected one of {', '.join(TRANSFORMS)}")
    if kind != "none" and min(users.shape[0], creators.shape[0]) < 2:
        raise ValueError(
            f"transform={kind!r} needs at least 2 users and 2 creators to centre "
            f"(got {users.shape[0]} and {creators.shape[0]})"
        )
    dtype = users.dtype
    u, c = users.double(), creators.double()
    if kind == "center":
        u, c = u - u.mean(0), c - c.mean(0)
    elif kind == "whiten":
        mean, w = _whitener(torch.cat([u, c]))
        u, c = (u - mean) @ w, (c - mean) @ w
    elif kind == "whiten_each":
        (mu, wu), (mc, wc) = _whitener(u), _whitener(c)
        u, c = (u - mu) @ wu, (c - mc) @ wc
    norms = torch.cat([u.norm(dim=1), c.norm(dim=1)])
    if not bool(torch.isfinite(norms).all()) or bool((norms == 0).any()):
        raise ValueError(
            f"transform={kind!r} maps a vector to zero or to a non-finite one (it equals the mean)"
        )
    return normalize(u).to(dtype), normalize(c).to(dtype)


# -- poles of a final state ------------------------------------------------------------------------------
def poles(users: Tensor, creators: Tensor) -> dict[str, Tensor]:
    """The principal axis of each replica and how users and creators split across it.

    The axis ``c`` is the top eigenvector of ``sum x x^T`` over users and creators (as in
    :func:`rectest.sim.measures.polarization_radius`), signed so that at least half the users have
    ``<u, c> >= 0``.

    Args:
        users: ``(R, m, d)`` unit vectors.
        creators: ``(R, n, d)`` unit vectors.

    Returns:
        ``axis`` ``(R, d)``; ``users_plus`` and ``creators_plus`` ``(R,)``: the fractions with a
        non-negative cosine to the axis; ``radius`` ``(R,)``: the largest distance of any vector to the
        nearer pole ``+-c`` (small when the state is bi-polarized).
    """
    second = (
        users.double().transpose(1, 2) @ users.double()
        + creators.double().transpose(1, 2) @ creators.double()
    )
    axis = torch.linalg.eigh(second)[1][..., -1]  # (R, d)
    cos_u = users.double() @ axis.unsqueeze(-1)  # (R, m, 1)
    flip = torch.where((cos_u >= 0).double().mean((1, 2)) < 0.5, -1.0, 1.0).to(axis)  # (R,)
    axis = axis * flip.unsqueeze(-1)
    cos_u = (cos_u * flip.view(-1, 1, 1)).squeeze(-1)  # (R, m)
    cos_c = (creators.double() @ axis.unsqueeze(-1)).squeeze(-1)  # (R, n)
    nearest = torch.minimum(cos_u.abs().amin(1), cos_c.abs().amin(1))  # (R,)
    return {
        "axis": axis.to(users.dtype),
        "users_plus": (cos_u >= 0).double().mean(1),
        "creators_plus": (cos_c >= 0).double().mean(1),
        "radius": (2 - 2 * nearest).clamp_min(0).sqrt(),
    }


def bipolar_prediction(
    creators_plus: float,
    users_plus: float,
    n: int,
    beta: float,
    k: int | None = None,
    tau: float | None = None,
    eps: float = 0.0,
) -> dict[str, float]:
    """CD, TP, RR and RD of the exact bi-polarized state with the given pole fractions.

    Creators sit at ``+c`` (a fraction ``a = creators_plus`` of the ``n``) or ``-c``, users at ``+c`` (a
    fraction ``users_plus``) or ``-c``, so every score is ``+1`` (same pole) or ``-1``. A user whose pole
    holds ``S`` creators (``O = n - S`` on the other) is recommended its own pole with probability
    ``q = S_e e^beta / (S_e e^beta + O_e e^-beta)``, where ``S_e, O_e`` are the eligible counts (top-k keeps
    ``min(S, k)`` of its own and ``min(O, k - min(S, k))`` of the other; a threshold ``tau > -1`` keeps
    only its own; nobody eligible means uniform over all, ``q = S / n``; ``beta = inf`` gives ``q = 1``),
    then uniform traffic mixes ``q <- (1 - eps) q + eps S / n``. Its relevance is ``RR_j = 2 q - 1``
    and its diversity ``RD_j = 1 - RR_j^2`` (``vbar_j = RR_j c``), so for plain softmax and a balanced
    split ``RR = tanh(beta)`` and ``RD = sech^2(beta)`` (spec section 6). ``CD = 4 a (1 - a) n / (n - 1)``
    and ``TP = 1``.

    Returns:
        ``{"CD", "TP", "RR", "RD"}``.
    """
    plus = round(creators_plus * n)
    rr = rd = 0.0
    for weight, own in ((users_plus, plus), (1 - users_plus, n - plus)):
        other = n - own
        own_e, other_e = own, other
        if k is not None and k < n:
            own_e = min(own, k)
            other_e = min(other, k - own_e)
        if tau is not None and tau > -1:
            other_e = 0
        if own_e + other_e == 0:
            q = own / n
        elif math.isinf(beta) or own_e == 0:
            q = 1.0 if own_e > 0 else 0.0
        else:  # own_e e^b / (own_e e^b + other_e e^-b), written so that no exp overflows
            q = 1.0 / (1.0 + (other_e / own_e) * math.exp(-2 * beta))
        q = (1 - eps) * q + eps * own / n
        rr += weight * (2 * q - 1)
        rd += weight * (1 - (2 * q - 1) ** 2)
    a = plus / n
    cd = 4 * a * (1 - a) * n / (n - 1) if n > 1 else 0.0
    return {"CD": cd, "TP": 1.0, "RR": rr, "RD": rd}
