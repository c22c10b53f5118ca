"""Measures of spec section 5, computed exactly and in chunks (never an ``n x n`` matrix at once).

All functions take replica-batched tensors and return one value per replica, ``(R,)``.

``chunk`` is the number of rows processed at once (in every replica), so a chunk holds at most
``R * chunk * n`` pairwise values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from rectest.sim import pairs, toplists
from rectest.sim import update as native_update
from rectest.sim.shards import MIN, SUM, UserShards

CD, RD, RR, TP, UD, CLUSTERS, POLARIZED = "CD", "RD", "RR", "TP", "UD", "clusters", "polarized"
MEASURES = (CD, RD, RR, TP, UD, CLUSTERS, POLARIZED)
CLUSTER_COSINE = 1 - 1e-3
# count_clusters keeps the (R, n, n) adjacency (one byte a pair) between its sweeps up to this size, so that
# later sweeps skip the Gram matrix: 32 replicas of ml-100k's 1,682 creators take 90 MB
LINK_CACHE_BYTES = 1 << 28
DEFAULT_CHUNK = 8192
GATHER_ELEMENTS = 1 << 21  # sparse_recommendation_sums gathers at most this many creator coordinates at once


def _row_chunks(rows: int, chunk: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges of at most ``chunk`` rows covering ``range(rows)``."""
    step = max(1, chunk)
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


def pairwise_diversity_and_polarization(v: Tensor, chunk: int = DEFAULT_CHUNK) -> tuple[Tensor, Tensor]:
    """Mean pairwise distance (CD's formula) and mean absolute cosine (TP) in one pass.

    Args:
        v: ``(R, n, d)`` unit vectors.
        chunk: rows per chunk (see module docstring).

    Returns:
        ``cd``: ``(R,)`` ``1/(n(n-1)) sum_{i != k} ||v_i - v_k||`` (0 when ``n < 2``), with
        ``||v_i - v_k|| = sqrt(max(2 - 2 <v_i, v_k>, 0))``; ``tp``: ``(R,)``
        ``1/n^2 sum_{i, k} |<v_i, v_k>|`` (diagonal included).
    """
    cd, tp, _ = _pair_pass(v, chunk, None)
    return cd, tp


def creator_pair_measures(
    v: Tensor, chunk: int = DEFAULT_CHUNK, cosine: float = CLUSTER_COSINE
) -> tuple[Tensor, Tensor, Tensor]:
    """CD, TP and the number of clusters from one pass over all pairs (the logged step's creator measures).

    On the CPU in float32 the compiled pass joins the cluster graph's edges (pairs with cosine ``>= cosine``)
    in a union-find forest as it sums CD and TP. Elsewhere the edges are collected in the same pass while they
    are few (at most ``EDGE_BUDGET_PER_VECTOR`` per vector on average), and their connected components found by
    label propagation over the edge list; a state with more edges (collapsed into few clusters) falls back to
    :func:`count_clusters`. Same values as the three separate functions.

    Returns:
        ``cd``, ``tp``: ``(R,)`` as :func:`pairwise_diversity_and_polarization`; ``clusters``: ``(R,)`` int64
        as :func:`count_clusters`.
    """
    cd, tp, clusters = _pair_pass(v, chunk, cosine)
    if clusters is None:
        return cd, tp, count_clusters(v, cosine, chunk)
    return cd, tp, clusters


EDGE_BUDGET_PER_VECTOR = 8


def _pair_pass(v: Tensor, chunk: int, cosine: float | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """CD and TP sums over all pairs; with ``cosine``, also the ``(R,)`` number of components of the graph of
    the pairs with cosine ``>= cosine`` (None when the torch path found more edges than its budget).

    The Gram matrix is symmetric, so each chunk of rows ``a:b`` meets only the columns ``k >= a``: the pairs
    ``i < k`` once (counted twice), the diagonal apart, half the work of all ``n x n`` pairs. On the CPU in
    float32 one compiled pass (``pairs.c``) sums each chunk's rows and joins its linked pairs in a union-find
    forest; elsewhere torch's operations sum the chunks and gather the edges.
    """
    R, n, _ = v.shape
    edges: list[Tensor] | None = [] if cosine is not None else None
    found, budget = 0, EDGE_BUDGET_PER_VECTOR * R * n
    # the compiled pass's sums (3, R, n): distances, |cos| (pairs i < k), the diagonal; its union-find forest
    per_row = parents = None
    if pairs.available(v.device, v.dtype):
        per_row = torch.zeros(3, R, n, dtype=torch.float64, device=v.device)
        parents = None if cosine is None else pairs.forest(R, n)  # (R, n) union-find over the linked pairs
    dist_sum = torch.zeros(R, dtype=v.dtype, device=v.device)
    abs_sum = torch.zeros(R, dtype=v.dtype, device=v.device)
    diag_sum = torch.zeros(R, dtype=v.dtype, device=v.device)
    vt = v.transpose(1, 2).contiguous()  # (R, d, n): a matmul with a transposed view is up to 2x slower
    for a, b in _row_chunks(n, chunk):
        c = b - a
        gram = v[:, a:b] @ vt[:, :, a:]  # (R, c, n - a): columns k >= a
        if per_row is not None:
            per_row[:, :, a:b] = pairs.row_sums(gram, 2.0 if cosine is None else cosine, parents, a)[0]
            continue
        block = gram[:, :, :c]  # (R, c, c) the pairs inside the chunk
        lower = torch.ones(c, c, dtype=torch.bool, device=v.device).tril_()  # k <= i: counted elsewhere
        diag_sum += block.diagonal(dim1=1, dim2=2).abs().sum(-1)  # |<v_i, v_i>| (1 up to rounding)
        block.masked_fill_(lower, 0.0)
        abs_sum += gram.abs().sum((1, 2))  # pairs i < k (5x faster than vector_norm(ord=1) on CPU)
        if edges is not None and bool(gram.amax() >= cosine):  # (a compare costs 10 maxima)
            hits = gram >= cosine  # (R, c, n - a)
            hits[:, :, :c] &= ~lower  # pairs i < k only
            r, i, k = hits.nonzero(as_tuple=True)  # (E',) each
            found += int(r.numel())
            if found > budget:
                edges = None  # dense: collapsed into few clusters
            else:
                edges.append(torch.stack([r * n + i + a, r * n + k + a], 1))
        block.masked_fill_(lower, 1.0)  # distance 0: left out of CD
        dist_sum += torch.rsub(gram, 2, alpha=2).clamp_min_(0).sqrt_().sum((1, 2))  # sqrt(2 - 2 cos)
    clusters = None
    if per_row is not None:  # totalled once all rows are in: the same floats for every chunk size
        dist_sum, abs_sum, diag_sum = per_row.sum(-1).to(v.dtype)
        clusters = None if parents is None else pairs.components(parents).to(v.device)
    elif edges is not None:
        found_edges = torch.cat(edges) if edges else torch.zeros(0, 2, dtype=torch.long, device=v.device)
        clusters = _components(found_edges, R, n)
    cd = 2 * dist_sum / (n * (n - 1)) if n > 1 else torch.zeros_like(dist_sum)
    return cd, (diag_sum + 2 * abs_sum) / (n * n), clusters


def _components(edges: Tensor, replicas: int, n: int) -> Tensor:
    """``(R,)`` connected components of ``R`` graphs on ``n`` nodes given as global ``(E, 2)`` edges:
    min-label propagation along the edges with pointer jumping."""
    labels = torch.arange(replicas * n, device=edges.device)
    u, w = edges[:, 0].to(labels.device), edges[:, 1].to(labels.device)
    while True:
        new = labels.clone()
        new.scatter_reduce_(0, u, labels[w], reduce="amin")
        new.scatter_reduce_(0, w, labels[u], reduce="amin")
        new = new[new]  # pointer jumping
        if torch.equal(new, labels):
            break
        labels = new
    roots = labels == torch.arange(replicas * n, device=labels.device)
    return roots.view(replicas, n).sum(-1)


def creator_diversity(v: Tensor, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """CD: ``(R,)`` mean Euclidean distance between distinct creators ``v`` ``(R, n, d)``."""
    return pairwise_diversity_and_polarization(v, chunk)[0]


def user_diversity(u: Tensor, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """UD: CD's formula over users ``u`` ``(R, m, d)``; returns ``(R,)``."""
    return pairwise_diversity_and_polarization(u, chunk)[0]


def sparse_recommendation_sums(
    weights: Tensor,
    idx: Tensor,
    total: Tensor,
    users: Tensor,
    creators: Tensor,
    dense: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`recommendation_sums` for distributions on a few creators per user (top-k lists), without
    the ``(R, c, n)`` rows.

    Args:
        weights: ``(R, c, k)`` unnormalised weights of the creators ``idx``.
        idx: ``(R, c, k)`` int64 creator indices.
        total: ``(R, c, 1)`` the row sums of ``weights``.
        users: ``(R, c, d)`` the chunk's true unit user vectors.
        creators: ``(R, n, d)`` the true unit creator vectors.
        dense: ``(replicas (t,), users (t,), full-row weights (t, n))`` users whose distribution is a full
            row instead (their ``weights`` are ignored), or None.

    Returns:
        ``(R,)`` RD's and ``(R,)`` RR's per-user terms summed over the chunk, as :func:`recommendation_sums`.
    """
    R, c, k = idx.shape
    n, d = creators.shape[1], creators.shape[2]
    if toplists.sums_available(
        weights, total, users, creators
    ):  # one compiled pass a row, no (R, c, k, d) gather
        rd_rows, rel_rows = toplists.recommendation_terms(weights, idx, total, users, creators)  # (R, c) each
    else:
        flat = creators.reshape(R * n, d)
        offset = torch.arange(R, device=idx.device).view(R, 1, 1) * n
        rd_rows = torch.empty(R, c, dtype=creators.dtype, device=creators.device)
        rel_rows = torch.empty(R, c, dtype=creators.dtype, device=creators.device)
        step = max(
            1, GATHER_ELEMENTS // max(1, R * k * d)
        )  # users whose (R, step, k, d) vectors are gathered
        for a in range(0, c, step):
            b = min(a + step, c)
            vecs = flat.index_select(0, (idx[:, a:b] + offset).reshape(-1)).view(R, b - a, k, d)
            vbar = torch.matmul(weights[:, a:b].unsqueeze(-2), vecs).squeeze(-2) / total[:, a:b]  # (R, c', d)
            rd_rows[:, a:b] = _diversity_terms(vbar)
            rel_rows[:, a:b] = torch.linalg.vecdot(users[:, a:b], vbar)  # <u_j, vbar_j> = sum_i p_ij s_ij
    if dense is not None:  # each such user as a batch of one: (t, 1, n) rows
        r, u, w = dense  # (t,), (t,), (t, n)
        w_rd, w_rr = recommendation_sums(
            w.unsqueeze(1),
            users[r, u].unsqueeze(1),
            creators.index_select(0, r),
            w.sum(-1, keepdim=True)[:, None],
        )
        rd_rows[r, u], rel_rows[r, u] = w_rd, w_rr
    return rd_rows.sum(-1), rel_rows.sum(-1)


def _diversity_terms(vbar: Tensor) -> Tensor:
    """``1 - ||vbar||^2`` of each mean recommended vector ``(..., d)``: ``>= 0`` exactly, the rounding clamped."""
    return (1 - (vbar * vbar).sum(-1)).clamp_min(0)


def tendency_to_polarization(v: Tensor, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """TP: ``(R,)`` mean absolute cosine over all creator pairs of ``v`` ``(R, n, d)``, diagonal included."""
    return pairwise_diversity_and_polarization(v, chunk)[1]


def recommendation_sums(
    p: Tensor, users: Tensor, creators: Tensor, total: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Sums over a chunk of users of RD's and RR's per-user terms.

    RR's term needs no pass over the scores: ``sum_i p_ij s_ij = sum_i p_ij <u_j, v_i> = <u_j, vbar_j>``,
    and ``vbar_j`` is RD's mean vector (equal up to float rounding; half the passes over ``(R, c, n)``).

    Args:
        p: ``(R, c, n)`` recommendation probabilities (rows sum to 1), or unnormalised weights with their
            row sums in ``total`` (the probabilities are then never formed: two small divisions instead of
            a pass over ``(R, c, n)``).
        users: ``(R, c, d)`` the chunk's true unit user vectors.
        creators: ``(R, n, d)`` the true unit creator vectors.
        total: ``(R, c, 1)`` row sums of ``p`` when it is not normalised.

    Returns:
        ``rd``: ``(R,)`` ``sum_j (1 - ||vbar_j||^2)`` with ``vbar_j = sum_i p_ij v_i``; ``rr``: ``(R,)``
        ``sum_j sum_i p_ij s_ij``. Divide by ``m`` for RD and RR.
    """
    vbar = p @ creators  # (R, c, d)
    if total is not None:
        vbar = vbar / total
    return _diversity_terms(vbar).sum(-1), torch.linalg.vecdot(users, vbar).sum(-1)


def recommendation_diversity(p: Tensor, creators: Tensor) -> Tensor:
    """RD ``(R,)`` for probabilities ``p`` ``(R, m, n)`` over creators ``(R, n, d)``."""
    return _diversity_terms(p @ creators).mean(-1)  # (R, m, d) mean vectors


def recommendation_relevance(p: Tensor, scores: Tensor) -> Tensor:
    """RR ``(R,)`` for probabilities ``p`` and true scores, both ``(R, m, n)``."""
    return (p * scores).sum(-1).mean(-1)


def count_clusters(v: Tensor, cosine: float = CLUSTER_COSINE, chunk: int = DEFAULT_CHUNK) -> Tensor:
    """Number of connected components of the graph linking vectors with cosine ``>= cosine``.

    Min-label propagation with pointer jumping, the adjacency computed in row chunks.

    Args:
        v: ``(R, n, d)`` unit vectors.
        cosine: edge threshold (default ``1 - 1e-3``, i.e. distance below about 0.045).
        chunk: rows per chunk.

    Returns:
        ``(R,)`` int64 component counts.
    """
    R, n, _ = v.shape
    ids = torch.arange(n, device=v.device)
    labels = ids.to(torch.int32).expand(R, n).clone()  # (R, n) a node of the same component with index <= own
    kept: list[Tensor] | None = [] if R * n * n <= LINK_CACHE_BYTES else None  # the adjacency, if it fits
    vt = v.transpose(1, 2).contiguous()  # (R, d, n)
    while True:
        new = labels.clone()
        for i, (a, b) in enumerate(_row_chunks(n, chunk)):
            if kept is not None and i < len(kept):
                linked = kept[i]  # computed in the first sweep
            else:
                linked = (v[:, a:b] @ vt) >= cosine  # (R, c, n)
                if kept is not None:
                    kept.append(linked)
            # the smallest linked label: labels - n < 0 where linked, 0 elsewhere (one int32 pass, no fill)
            neighbour = ((labels.unsqueeze(1) - n) * linked).amin(-1) + n  # (R, c)
            new[:, a:b] = torch.minimum(new[:, a:b], neighbour)
        new = new.gather(1, new.long())  # pointer jumping
        if torch.equal(new, labels):
            return (labels == ids).sum(-1)
        labels = new


def polarization_radius(users: Tensor, creators: Tensor, shards: UserShards | None = None) -> Tensor:
    """Largest distance of any user or creator to the nearer of ``+c`` and ``-c``.

    ``c`` is the principal axis (top eigenvector of ``sum x x^T`` over users and creators), a
    sign-invariant centre; the state is declared r-polarized when this radius is ``<= r``. This is a
    sufficient check: with the optimal ``c`` the radius can only be smaller.

    Args:
        users: ``(R, m, d)`` unit vectors (this rank's share when sharded).
        creators: ``(R, n, d)`` unit vectors.
        shards: reduces over the other ranks' users (None: all users are here).

    Returns:
        ``(R,)`` radii ``max_x sqrt(max(2 - 2 |<x, c>|, 0))``.
    """
    over = _over(shards)
    second = over(users.transpose(1, 2) @ users, SUM) + creators.transpose(1, 2) @ creators  # (R, d, d)
    axis = torch.linalg.eigh(second.double())[1][..., -1].to(users.dtype)  # (R, d) top eigenvector
    cos_u = over((users @ axis.unsqueeze(-1)).abs().amin((1, 2)), MIN)  # (R,)
    cos_c = (creators @ axis.unsqueeze(-1)).abs().amin((1, 2))  # (R,)
    return (2 - 2 * torch.minimum(cos_u, cos_c)).clamp_min(0).sqrt()


# the compiled anchor cosines may differ from torch's by rounding, at most about 2 d eps for unit vectors in d
# dimensions: a replica within twice that of the threshold is still checked, so the cheap condition never skips a
# replica that torch's would have checked
ANCHOR_SLACK_PER_DIM = 4 * torch.finfo(torch.float32).eps


def is_polarized(
    users: Tensor, creators: Tensor, r: float, shards: UserShards | None = None, among: Tensor | None = None
) -> Tensor:
    """``(R,)`` bool: :func:`polarization_radius` ``<= r``, skipping replicas that cannot be polarized.

    Cheap necessary condition first: in an r-polarized state every vector lies within ``2r`` of
    ``+-v_0`` (the first creator), i.e. ``|<x, v_0>| >= 1 - 2 r^2``.

    Args:
        among: ``(R,)`` bool, the replicas whose flag is wanted (the same on every rank), or None for all;
            the others are reported False without their radius being computed.
    """
    if native_update.available(users.device, users.dtype):  # one compiled pass (its sums in another order:
        near_u, near_c = native_update.anchor_cosines(users, creators)  # a margin keeps the check necessary)
        slack = ANCHOR_SLACK_PER_DIM * users.shape[-1]
    else:
        anchor = creators[:, :1].transpose(1, 2)  # (R, d, 1)
        near_u, near_c = (
            (users @ anchor).abs().amin((1, 2)),
            (creators @ anchor).abs().amin((1, 2)),
        )  # (R,) each
        slack = 0.0
    near = torch.minimum(_over(shards)(near_u, MIN), near_c)  # (R,)
    possible = near >= 1 - 2 * r * r - slack  # (R,)
    if among is not None:
        possible &= among.to(possible.device)
    candidates = possible.nonzero().flatten()  # (R',), the same on every rank
    out = torch.zeros(users.shape[0], dtype=torch.bool, device=users.device)
    if candidates.numel():
        radius = polarization_radius(users[candidates], creators[candidates], shards)
        out[candidates] = radius <= r
    return out


def _over(shards: UserShards | None) -> Callable[[Tensor, str], Tensor]:
    """Reduction over the users of every rank (the identity when all users are here)."""
    return shards.reduce if shards is not None else (lambda x, op: x)
