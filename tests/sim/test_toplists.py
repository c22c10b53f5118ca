"""Top-k candidate lists (rectest.sim.toplists): the exact top k from any list, stale or fresh, the scores left
as they were, and the engine's trajectories equal to a full-row top-k's."""

import pytest
import torch

from rectest.sim import Dynamics, Policy, Simulation, State, policies, random_sphere, toplists
from rectest.sim.toplists import initial_lists, list_length, top_entries


@pytest.fixture(params=["compiled", "torch"])
def check_path(request, monkeypatch):
    """Each test runs with the compiled list check (toplists.c) and with its torch path."""
    if request.param == "torch":
        monkeypatch.setattr(toplists, "_available", lambda scores, lists: False)
    elif toplists._kernel() is None:
        pytest.skip("no C compiler here (or RECTEST_NATIVE=0): the compiled list check cannot be built")
    return request.param


def same_top(vals: torch.Tensor, idx: torch.Tensor, scores: torch.Tensor, k: int) -> None:
    """``(vals, idx)`` is the top k of ``scores``: the same values in the same (descending) order, and the
    indices point at those values (the scores have no ties, so the sets are equal too)."""
    ref_vals, ref_idx = scores.topk(k, dim=-1)
    assert torch.equal(vals, ref_vals)
    assert torch.equal(idx.sort(-1).values, ref_idx.sort(-1).values)
    assert torch.equal(scores.gather(-1, idx), vals)


@pytest.mark.parametrize("k", [1, 5, 12])
def test_any_list_gives_the_exact_top_k_and_the_failing_rows_are_rebuilt(gen, k, check_path):
    R, c, n = 3, 40, 200
    L = list_length(k, n)
    assert L is not None and L >= k
    scores = torch.randn(R, c, n, generator=gen)
    before = scores.clone()
    lists = initial_lists(R, c, L, scores.device)  # 0 .. L-1: wrong for almost every row
    vals, idx = top_entries(scores, k, lists)
    same_top(vals, idx, scores, k)
    assert torch.equal(scores, before)  # the masked entries were restored bit for bit
    initial = (lists == initial_lists(R, c, L, scores.device)).all(-1)  # (R, c): rows whose top k was inside
    rebuilt = lists.long().sort(-1).values == scores.topk(L, -1).indices.sort(-1).values
    assert initial.float().mean() < 0.5 and torch.equal(rebuilt.all(-1), ~initial)  # the others: their top L
    # one step later most rows still hold their top k inside the list; the others are rebuilt
    moved = scores + 0.05 * torch.randn(R, c, n, generator=gen)
    vals, idx = top_entries(moved, k, lists)
    same_top(vals, idx, moved, k)
    # a list that is a permutation of every creator is never wrong; a shuffled stale list gives the same
    shuffled = lists[..., torch.randperm(L, generator=gen)].contiguous()
    vals2, idx2 = top_entries(moved, k, shuffled)
    assert torch.equal(vals2, vals) and torch.equal(idx2.sort(-1).values, idx.sort(-1).values)


@pytest.mark.parametrize("where", ["outside", "in the list"])
def test_a_nan_row_is_rebuilt_from_its_full_row(gen, check_path, where):
    scores = torch.randn(1, 4, 60, generator=gen)
    lists = scores.topk(list_length(2, 60), -1).indices.int()  # fresh lists: no row needs rebuilding ...
    scores[0, 2, lists[0, 2, -1] if where == "in the list" else scores[0, 2].argmin()] = float("nan")
    vals, _ = top_entries(scores, 2, lists)
    assert torch.equal(vals[0, [0, 1, 3]], scores[0, [0, 1, 3]].topk(2, -1).values)
    assert torch.isnan(
        vals[0, 2]
    ).any()  # ... but this one: as torch.topk reports it, the engine's guards see it


def test_a_new_leader_anywhere_in_the_row_is_seen(gen, check_path):
    """Fresh lists, then in each row one creator outside its list jumps above all: at every position of the
    row (the first, the last, each lane of the compiled pass's tail) the row is rebuilt and the leader is first."""
    n, L = 37, 10
    scores = torch.rand(1, n, n, generator=gen)
    lists = scores.topk(L, -1).indices.int()
    for row in range(n):  # row j's leader at position j (inside its list: no change, the list holds it)
        scores[0, row, row] = 2.0 + row
    vals, idx = top_entries(scores, 3, lists)
    assert torch.equal(idx[0, :, 0], torch.arange(n)) and torch.equal(vals[0, :, 0], 2.0 + torch.arange(n))


def test_ties_and_infinities_give_the_same_values_on_both_paths(gen, monkeypatch):
    """Many exact ties (scores in steps of 1/4) and infinities: the compiled check and the torch path return
    the same values, indices pointing at them, and rebuild the same rows."""
    if toplists._kernel() is None:
        pytest.skip("no C compiler here (or RECTEST_NATIVE=0): the compiled list check cannot be built")
    scores = torch.randint(-4, 5, (2, 30, 80), generator=gen).float() / 4
    scores[0, 0, :5] = torch.tensor([torch.inf, -torch.inf, torch.inf, 0.0, -0.0])
    scores[1, 1] = -torch.inf
    lists = torch.stack([torch.randperm(80, generator=gen)[:12] for _ in range(60)]).view(2, 30, 12).int()
    compiled_lists, torch_lists = lists.clone(), lists.clone()
    vals, idx = top_entries(scores, 6, compiled_lists)
    monkeypatch.setattr(toplists, "_available", lambda scores, lists: False)
    ref_vals, ref_idx = top_entries(scores, 6, torch_lists)
    assert torch.equal(vals, ref_vals) and torch.equal(scores.gather(-1, idx), vals)
    assert torch.equal(compiled_lists, torch_lists)  # the same rows rebuilt, from the same full-row topk


@pytest.mark.skipif(
    not toplists.select.available(torch.device("cpu"), torch.float32),
    reason="no C compiler here (or RECTEST_NATIVE=0): rebuilt rows take torch.topk",
)
@pytest.mark.parametrize("length", [1, 5, 20, 64, 100])
def test_rebuilt_rows_are_topk_but_for_the_order_of_equal_scores(gen, length):
    """A stale row's new list from the compiled selection: torch.topk's values in order, the same creators above
    the L-th score, each creator once, on rows with ties above, at and below the L-th score and NaN rows."""
    rows = torch.rand(40, 300, generator=gen)
    rows[1] = 0.5  # every score tied
    rows[2, 200:] = rows[2, :100]  # each score twice: ties at and above the L-th
    rows[3, 100:110] = 2.0  # ten tied leaders
    rows[4, 7] = torch.nan
    rows[5, 0] = -torch.nan
    rows[6, 10:20] = torch.inf
    at = torch.cat([torch.randperm(40, generator=gen)[:30], torch.tensor([2, 2, 4])])  # some rows, some twice
    batch = rows.view(4, 10, 300)  # (read where the rows lie)
    rows = rows[at]
    outside = torch.where(torch.isnan(rows).any(-1), torch.nan, 0.0)  # (as the list check reports a NaN)
    vals, idx = toplists._rebuilt(batch, at, length, outside)
    ref_vals, ref_idx = rows.topk(length, dim=-1)
    torch.testing.assert_close(vals, ref_vals, rtol=0, atol=0, equal_nan=True)
    clean = ~torch.isnan(outside)
    assert torch.equal(rows[clean].gather(-1, idx[clean]), vals[clean])  # the entries are the row's
    assert bool((idx.sort(-1).values.diff(dim=-1) > 0).all())  # distinct creators
    if length > 1:  # a NaN the list check did not report (the torch check masks the list's own entries)
        row = torch.tensor([[torch.nan, 3.0, 2.0, 1.0, 0.0, -1.0]])
        got = toplists._rebuilt(row, torch.tensor([0]), 2, torch.tensor([0.0]))
        torch.testing.assert_close(got, row.topk(2, dim=-1), rtol=0, atol=0, equal_nan=True)
    above = (rows >= 0) & (rows > ref_vals[:, -1:])  # creators strictly above the L-th score
    for r in range(rows.shape[0]):
        if clean[r]:
            assert set(above[r].nonzero().flatten().tolist()) <= set(idx[r].tolist()), r


def test_lists_are_used_only_while_short():
    assert list_length(11, 1682) == 22
    assert list_length(2, 50) == 10  # at least LIST_SLACK more than wanted
    assert list_length(101, 300) is None  # 202 > 300 / 3: a full-row topk costs no more


@pytest.mark.parametrize("ks", [[1, 3, 5], [2, 7, 7, 300]])
def test_trajectories_with_lists_equal_full_row_top_k(ks, monkeypatch):
    """The lists change nothing but the cost: the same choices at every step, the same vectors after 40
    steps, in a batch of top-k lists alone and in one mixed with untruncated replicas (float32, lists
    rebuilt as the vectors move)."""
    gen = torch.Generator().manual_seed(7)
    state = State(random_sphere(1, 90, 6, gen), random_sphere(1, 300, 6, gen))
    seeds = list(range(len(ks)))

    def run(lists: bool) -> tuple[list[torch.Tensor], Simulation]:
        if not lists:
            monkeypatch.setattr(policies, "list_length", lambda k, n: None)
        sim = Simulation(
            state, Policy(beta=2.0, k=ks), Dynamics(eta_u=0.2, eta_c=0.2), seeds=seeds, log_every=7
        )
        monkeypatch.undo()
        return [sim.step() for _ in range(40)], sim

    with_lists, a = run(True)
    without, b = run(False)

    def lists_of(sim: Simulation) -> list[torch.Tensor]:
        return [c for c in sim._lists.values() if c is not None and c.dim() == 3]  # (R', m, L) lists

    assert lists_of(a) and not lists_of(b)  # the lists were in use in one run only (b: the selection's hints)
    for x, y in zip(with_lists, without, strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.users, b.users) and torch.equal(a.creators, b.creators)
    assert torch.equal(a.history["CD"], b.history["CD"])


def test_an_outside_creator_tied_with_the_last_entry_keeps_the_list(gen):
    """The list's k-th score may equal an outside score: the top-k values are still the full row's, so the
    list stands (collapsed clusters of creators tie bit for bit in long real-data runs)."""
    n, k = 60, 3
    L = list_length(k, n)
    scores = torch.rand(1, 1, n, generator=gen) * 0.5  # below every list entry
    scores[0, 0, :k] = torch.tensor([0.9, 0.8, 0.7])
    scores[0, 0, k:L] = 0.6
    scores[0, 0, 50] = 0.7  # outside the list, tied with its k-th entry
    lists = initial_lists(1, 1, L, scores.device)
    vals, idx = top_entries(scores, k, lists)
    assert torch.equal(vals, scores.topk(k, -1).values)
    assert torch.equal(lists, initial_lists(1, 1, L, scores.device))  # not rebuilt
    scores[0, 0, 50] = 0.75  # now above it: the list must go
    vals, _ = top_entries(scores, k, lists)
    assert torch.equal(vals, scores.topk(k, -1).values) and 50 in lists[0, 0].tolist()


def _torch_draw(w, idx, k, uniforms, vals=None):
    """The torch path of draw_top_k's draw, as written there: weights past k zeroed, (from descending entries)
    put in creator order, cumsum, u * total, searchsorted(right=True) clamped."""
    m = w.shape[-1]
    rank = torch.arange(m).view(1, 1, -1)
    w = w * (rank < k)
    kth = tied = None
    if vals is not None:
        kk = k.expand(-1, w.shape[1], 1)
        kth = vals.gather(-1, kk - 1)
        tied = (kth == vals.gather(-1, kk)).squeeze(-1)
        idx, order = idx.sort(-1)
        w = w.gather(-1, order)
    cdf = w.cumsum(-1)
    total = cdf[..., -1:]
    pos = torch.searchsorted(cdf, uniforms.to(cdf.dtype).unsqueeze(-1) * total, right=True).clamp_max_(m - 1)
    return idx.gather(-1, pos).squeeze(-1), w, idx, total, kth, tied


@pytest.mark.parametrize("m", [1, 3, 11, 64, 65, 300])
@pytest.mark.parametrize("by_score", [False, True])
def test_the_compiled_draw_is_the_torch_draw_bit_for_bit(gen, m, by_score):
    """toplists.draw against the torch operations it replaces: the same choices, weights, creators, totals,
    k-th scores and ties, for entries given by score (the lists) or in creator order (the selection), rows of
    up to 64 entries (insertion sort) and beyond (qsort), k per replica, weights spanning 30 orders of
    magnitude, ties of the k-th score, and uniforms at 0 and just below 1."""
    if not toplists.draw_available(torch.zeros(1)):
        pytest.skip("no C compiler here (or RECTEST_NATIVE=0): the compiled draw cannot be built")
    R, c, n = 4, 50, 1000
    k = torch.tensor([1, m, max(1, m // 2), max(1, m - 1)]).view(R, 1, 1)
    creators = torch.stack([torch.randperm(n, generator=gen)[: m + 1] for _ in range(R * c)]).view(
        R, c, m + 1
    )
    vals = torch.randn(R, c, m + 1, generator=gen).sort(-1, descending=True).values
    vals[:, ::3, -2:] = vals[
        :, ::3, -1:
    ]  # ties of the last entries: the k-th with the next, where k = m - 1, m
    if not by_score:
        creators = creators.sort(-1).values
    w = (
        torch.exp(10 * vals[..., :m])
        if by_score
        else torch.rand(R, c, m, generator=gen) * 10.0 ** (torch.randint(-15, 15, (R, c, m), generator=gen))
    )
    uniforms = torch.rand(R, c, generator=gen, dtype=torch.float64)
    uniforms[:, 0], uniforms[:, 1] = 0.0, 1 - 2**-53
    args = (w, creators[..., :m], k, uniforms, vals if by_score else None)
    got, want = toplists.draw(*args), _torch_draw(*args)
    for a, b in zip(got, want, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    if by_score:
        assert got[5].any() and not got[5].all()  # some ties of the k-th score, not all


@pytest.mark.parametrize("ks", [[1, 3, 5], [2, 7, 150, 300]])
def test_trajectories_with_the_compiled_draw_equal_the_torch_draw(ks, monkeypatch):
    """The compiled draw (toplists.draw) and the torch draw that runs on CUDA or without a compiler make the
    same choices at every step and leave the same vectors and logged measures, from the lists (small k) and
    from the compiled selection (k = 150 of 300: lists do not pay)."""
    if not toplists.draw_available(torch.zeros(1)):
        pytest.skip("no C compiler here (or RECTEST_NATIVE=0): the compiled draw cannot be built")
    gen = torch.Generator().manual_seed(5)
    state = State(random_sphere(1, 90, 6, gen), random_sphere(1, 300, 6, gen))

    def run() -> tuple[list[torch.Tensor], Simulation]:
        sim = Simulation(
            state,
            Policy(beta=2.0, k=ks),
            Dynamics(eta_u=0.2, eta_c=0.2),
            seeds=list(range(len(ks))),
            log_every=7,
        )
        return [sim.step() for _ in range(40)], sim

    compiled, a = run()
    monkeypatch.setattr(toplists, "draw_available", lambda weights: False)
    plain, b = run()
    for x, y in zip(compiled, plain, strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.users, b.users) and torch.equal(a.creators, b.creators)
    for name in ("CD", "RD", "RR"):
        assert torch.equal(a.history[name], b.history[name])
