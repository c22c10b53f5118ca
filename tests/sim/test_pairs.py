"""The compiled pair pass (rectest.sim.pairs) behind CD, TP, UD and the clusters: each row's sums equal their
definitions, the totals equal the torch path's and do not depend on the chunk size, and its union-find forest
holds the cluster graph's components."""

import math

import pytest
import torch

from rectest.sim import count_clusters, creator_pair_measures, pairs, random_sphere
from rectest.sim import measures as M

pytestmark = pytest.mark.skipif(
    not pairs.available(torch.device("cpu"), torch.float32),
    reason="no C compiler here (or RECTEST_NATIVE=0): the kernel cannot be built, the measures use torch",
)


@pytest.mark.parametrize("n,a,c", [(1, 0, 1), (17, 0, 17), (40, 5, 16), (40, 39, 1), (100, 33, 33)])
def test_row_sums_equal_their_definitions(gen, n, a, c):
    """Per row i of a chunk (rows a..a+c-1, columns a..n-1): sums over k > i of the distance, |cos| and
    [cos >= threshold], and |cos_ii|; rows of every length modulo the kernel's 16 lanes."""
    R = 3
    v = random_sphere(R, n, 6, gen)
    v[:, -1] = v[:, 0]  # a duplicate: a cosine of 1 (up to rounding), a distance near 0
    gram = v[:, a : a + c] @ v[:, a:].transpose(1, 2)  # (R, c, n - a)
    gram[0, 0, -1] = 1.5  # beyond 1 (rounding can give it): 2 - 2 cos < 0 is clamped to distance 0
    cosine = 0.5
    (dist, abs_sum, diag), linked = pairs.row_sums(gram, cosine)
    g = gram.double()
    for r in range(R):
        for i in range(c):
            right = g[r, i, i + 1 :]  # the pairs (a + i, k) with k > a + i
            assert dist[r, i].item() == pytest.approx(
                (2 - 2 * right).clamp_min(0).sqrt().sum().item(), abs=1e-5
            )
            assert abs_sum[r, i].item() == pytest.approx(right.abs().sum().item(), abs=1e-5)
            assert diag[r, i].item() == abs(g[r, i, i].item())
            assert linked[r, i].item() == int((gram[r, i, i + 1 :] >= cosine).sum())
    if c * (n - a) > 100:  # the threshold separates some pairs
        assert 0 < linked.sum() < R * c * (n - a) / 2


def test_pair_pass_equals_the_torch_path_and_the_double_loop_in_any_chunking(gen, monkeypatch):
    """CD and TP from the kernel: the definitions' double sums (float64) up to float32 rounding, the torch
    path's values, and the same floats whatever the chunk size."""
    v = random_sphere(2, 70, 5, gen)
    ref = v.double()
    gram = ref @ ref.transpose(1, 2)  # (2, 70, 70)
    off = ~torch.eye(70, dtype=torch.bool)
    want_cd = (2 - 2 * gram).clamp_min(0).sqrt()[:, off].sum(-1) / (70 * 69)
    want_tp = gram.abs().sum((1, 2)) / 70**2
    native = [M.pairwise_diversity_and_polarization(v, chunk) for chunk in (1, 3, 16, 70, 8192)]
    for cd, tp in native:
        assert torch.equal(cd, native[0][0]) and torch.equal(tp, native[0][1])  # chunk-independent
        assert torch.allclose(cd.double(), want_cd, atol=1e-6) and torch.allclose(
            tp.double(), want_tp, atol=1e-6
        )
    monkeypatch.setattr(pairs, "available", lambda device, dtype: False)
    for chunk in (3, 70):
        cd, tp = M.pairwise_diversity_and_polarization(v, chunk)
        assert torch.allclose(cd, native[0][0], atol=1e-6) and torch.allclose(tp, native[0][1], atol=1e-6)


def test_clusters_from_the_kernel_match_count_clusters(gen):
    """Groups of near-duplicates (cosine above the threshold within a group, far below it between groups):
    the kernel's forest gives the groups as clusters, in any chunking."""
    R, groups, size, d = 2, 9, 5, 8
    centres = random_sphere(R, groups, d, gen)
    v = centres.repeat_interleave(size, 1) + 1e-4 * torch.randn(R, groups * size, d, generator=gen)
    v = v / v.norm(dim=-1, keepdim=True)
    for chunk in (1, 4, 7, 1000):
        cd, tp, clusters = creator_pair_measures(v, chunk)
        assert clusters.tolist() == [groups] * R
        assert torch.equal(clusters, count_clusters(v, chunk=chunk))
        assert math.isfinite(cd.sum().item()) and math.isfinite(tp.sum().item())


def _components_by_search(linked: list[list[bool]]) -> int:
    """Connected components of an undirected graph given by its upper triangle, by depth-first search."""
    n, seen, count = len(linked), set(), 0
    for start in range(n):
        if start in seen:
            continue
        count += 1
        stack = [start]
        seen.add(start)
        while stack:
            i = stack.pop()
            for k in range(n):
                if k not in seen and (linked[min(i, k)][max(i, k)] and i != k):
                    seen.add(k)
                    stack.append(k)
    return count


@pytest.mark.parametrize("chunk", [1, 3, 8, 40])
def test_the_forest_holds_the_components_of_the_linked_pairs(gen, chunk):
    """Random symmetric scores, thresholds giving graphs from no edges to a connected one: the forest's
    roots, after every chunk of rows (rows a.., columns a..n-1) has been joined, are the graph's components
    found by search, whatever the chunking; every root is its tree's smallest node."""
    R, n = 4, 40
    scores = torch.rand(R, n, n, generator=gen)
    scores = (scores + scores.transpose(1, 2)) / 2
    counts = set()
    for cosine in (0.999, 0.95, 0.9, 0.8, 0.6):
        parents = pairs.forest(R, n)
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            pairs.row_sums(scores[:, a:b, a:].contiguous(), cosine, parents, a)
        want = [_components_by_search((scores[r] >= cosine).tolist()) for r in range(R)]
        assert pairs.components(parents).tolist() == want
        assert (parents <= torch.arange(n, dtype=torch.int32)).all()
        counts.update(want)
    assert n in counts and 1 in counts and any(1 < x < n for x in counts)  # no edges .. connected


def test_the_forest_must_fit_the_chunk():
    with pytest.raises(ValueError, match="expected contiguous int32"):
        pairs.row_sums(torch.zeros(2, 3, 5), 0.5, pairs.forest(2, 4), 0)
    with pytest.raises(ValueError, match="expected contiguous int32"):
        pairs.row_sums(torch.zeros(2, 3, 5), 0.5, pairs.forest(2, 8).long(), 0)


def test_a_chunk_needs_its_diagonal():
    with pytest.raises(ValueError, match="needs at least 3 columns"):
        pairs.row_sums(torch.zeros(1, 3, 2), 0.5)
