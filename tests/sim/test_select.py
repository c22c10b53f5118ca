"""The compiled top-k selection (rectest.sim.select): the k-th value bit for bit torch.topk's, the counts and the
index lists it promises, and the engine's trajectories unchanged whether it or torch.topk selects."""

import math

import pytest
import torch
from runs import assert_same_runs

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere, select

pytestmark = pytest.mark.skipif(
    not select.available(torch.device("cpu"), torch.float32),
    reason="no C compiler here (or RECTEST_NATIVE=0): the kernel cannot be built, the policies use torch.topk",
)


def check_rows(scores: torch.Tensor, k: torch.Tensor, kmax: int) -> None:
    """``select`` against its definition on every row: the k-th value of a full sort, the count of scores at
    least it, the first ``kmax`` such indices in index order (padded with the last); ``top_mask`` the 0/1 mask;
    ``top_weights`` the truncated softmax's weights."""
    kth, count, idx = select.select(scores, k, kmax)
    mask, mask_count = select.top_mask(scores, k)
    assert torch.equal(mask_count, count)
    assert torch.equal(mask, (scores >= kth.unsqueeze(-1)).float())
    beta = torch.rand(scores.shape[:-1]) * 3
    weights = select.top_weights(scores, k, beta)  # as the policies' softmax over the top k
    assert torch.equal(weights, torch.mul(scores, beta.unsqueeze(-1)).exp_() * mask)
    if kmax:  # the listed scores times beta, without the gather
        *listed, logits = select.select_logits(scores, k, kmax, beta)
        same(tuple(listed), (kth, count, idx))
        assert torch.equal(logits, torch.mul(scores.gather(-1, idx), beta.unsqueeze(-1)))
    flat = scores.reshape(-1, scores.shape[-1])
    ranks = k.expand(scores.shape[:-1]).reshape(-1)
    lists = idx.reshape(flat.shape[0], kmax)
    for row, r, v, c, ix in zip(flat, ranks, kth.reshape(-1), count.reshape(-1), lists, strict=True):
        ref = row.topk(int(r)).values[-1]
        assert v == ref  # the same float (bit for bit but for the sign of a zero, as equal scores)
        at_least = (row >= ref).nonzero().flatten()  # in index order
        assert int(c) == at_least.numel()
        if kmax:
            want = at_least[:kmax].tolist()
            want += [want[-1]] * (kmax - len(want))
            assert ix.tolist() == want


@pytest.mark.parametrize("n", [1, 7, 64, 65, 1682])
def test_kth_value_counts_and_indices_equal_the_definition(gen, n):
    R, c = 3, 40
    users = random_sphere(R, c, 8, gen)
    creators = random_sphere(R, n, 8, gen)
    scores = users @ creators.transpose(1, 2)  # (R, c, n) cosines
    for k in sorted({1, min(2, n), max(1, n // 3), n}):
        check_rows(scores, torch.tensor(k), kmax=min(k + 2, n))
    per_row = torch.randint(1, n + 1, (R, c), generator=gen)
    check_rows(scores, per_row, kmax=0)
    check_rows(scores[:, ::2], per_row[:, ::2], kmax=3)  # a strided view is read as its values


def tricky_rows(gen: torch.Generator, n: int = 100) -> torch.Tensor:
    """(50, n) rows of exact ties: all zeros, -0 beside +0, infinities."""
    scores = torch.randint(-3, 4, (50, n), generator=gen).float() / 4  # many exact ties
    scores[0] = 0.0
    scores[1, ::2] = -0.0  # -0 and +0 are equal scores
    scores[2, :3] = torch.tensor([torch.inf, -torch.inf, torch.inf])
    return scores


def test_ties_signed_zeros_and_infinities(gen):
    n = 100
    scores = tricky_rows(gen, n)
    for k in (1, 2, 10, 50, n):
        check_rows(scores, torch.tensor(k), kmax=12)
    kth, count, _ = select.select(scores, torch.tensor(10))
    assert bool((count >= 10).all()) and bool((count > 10).any())  # ties counted: the caller sees them


def rows_of_every_kind(gen: torch.Generator, n: int) -> torch.Tensor:
    """(7, n) rows: cosines, all equal, two values, subnormals, tiny and huge magnitudes of both signs,
    infinities, a constant run with one outlier."""
    rows = [
        torch.rand(n, generator=gen) * 2 - 1,
        torch.full((n,), 0.25),
        (torch.rand(n, generator=gen) < 0.5).float() - 0.5,
        torch.randn(n, generator=gen) * 1e-40,  # subnormals
        torch.randn(n, generator=gen) * torch.logspace(-30, 30, n),
        torch.where(torch.rand(n, generator=gen) < 0.1, torch.inf, torch.randn(n, generator=gen)),
        torch.cat([torch.full((n - 1,), -2.0), torch.tensor([3.0])]),
    ]
    return torch.stack(rows)


@pytest.mark.parametrize("n", [65, 97, 257, 1000, 3001])
def test_kth_value_on_rows_of_every_kind(gen, n):
    """The k-th value equals torch.topk's on rows that make the search over the bits narrow its working set in
    every way: cosines, all equal, two values, tiny and huge magnitudes of both signs, infinities, a constant
    run with one outlier; every k from 1 to n in steps."""
    scores = rows_of_every_kind(gen, n)  # (7, n)
    for k in sorted({1, 2, 3, 5, 17, 25, 64, 65, n // 3, n // 2, n - 1, n}):
        kth, count, _ = select.select(scores, torch.tensor(k))
        ref = scores.topk(k, -1).values[:, -1]
        assert torch.equal(kth, ref), k
        assert torch.equal(count, (scores >= ref.unsqueeze(-1)).sum(-1)), k


def same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> None:
    """Equal bit for bit (floats compared as their bits: -0 is not +0, a NaN equals the same NaN)."""
    for x, y in zip(a, b, strict=True):
        if x.is_floating_point():
            x, y = x.view(torch.int32), y.view(torch.int32)
        assert torch.equal(x, y)


@pytest.mark.parametrize("n", [1, 7, 64, 65, 300, 1682])
def test_hints_change_nothing_but_the_cost(gen, n):
    """Hints carried from call to call (none yet, the previous step's, absurd ones) give the k-th values, counts
    and lists of no hint; every hint left behind has at least k scores of its row at or above it, so the next
    call on the same scores reads candidates only."""
    R, c, d = 3, 40, 8
    users, creators = random_sphere(R, c, d, gen), random_sphere(R, n, d, gen)
    steps = [users @ creators.transpose(1, 2)]  # (R, c, n) cosines, then after the vectors moved by 0.1
    for _ in range(3):
        users = torch.nn.functional.normalize(users + 0.1 * random_sphere(R, c, d, gen), dim=-1)
        creators = torch.nn.functional.normalize(creators + 0.1 * random_sphere(R, n, d, gen), dim=-1)
        steps.append(users @ creators.transpose(1, 2))
    for k in sorted({1, min(2, n), min(30, n), min(100, n), max(1, n // 3), n}):
        rank, kmax = torch.tensor(k), min(k + 2, n)
        hints = torch.full((R, c), float("nan"))
        for scores in [*steps, steps[-1]]:
            same(select.select(scores, rank, kmax, hints), select.select(scores, rank, kmax))
            logits = select.select_logits(scores, rank, kmax, 2.0, hints.clone())[
                3
            ]  # (a hint: the same floats)
            assert torch.equal(logits, select.select_logits(scores, rank, kmax, 2.0)[3])
            assert bool(((scores >= hints.unsqueeze(-1)).sum(-1) >= k).all())
        for fill in (float("inf"), -float("inf"), 0.0, 0.5):  # nothing reaches it, everything does, ...
            same(
                select.select(scores, rank, kmax, torch.full((R, c), fill)), select.select(scores, rank, kmax)
            )


@pytest.mark.parametrize("n", [3, 15, 16, 17, 50, 63, 64])
def test_short_rows_in_registers_equal_the_general_search(gen, n):
    """Rows of at most 64 scores are selected in four registers (``short_row`` in select.c); a hint below every
    score sends the same rows through the general search. The two agree bit for bit (values, counts, lists) on
    rows of every kind, with ties, signed zeros, infinities and NaN, for every k; and match the definition on
    the rows without a NaN."""
    scores = torch.cat([rows_of_every_kind(gen, n), tricky_rows(gen, n)[:3]])  # (10, n)
    nans = scores[:2].clone()
    nans[0, n // 2] = torch.nan
    nans[1, 0] = -torch.nan  # (a NaN with the sign bit set: the smallest key)
    every = torch.cat([scores, nans])  # (12, n)
    for k in range(1, n + 1, max(1, n // 9)):
        rank, kmax = torch.tensor(k), min(k + 3, n)
        general = select.select(every, rank, kmax, torch.full((every.shape[0],), -torch.inf))
        same(select.select(every, rank, kmax), general)
        check_rows(scores[[0, 7, 8, 9]], rank, kmax)  # cosines, zeros, -0 beside +0, infinities
        ref = scores.topk(k, -1).values[:, -1]
        assert torch.equal(general[0][:10], ref), k
        assert torch.equal(general[1][:10], (scores >= ref.unsqueeze(-1)).sum(-1)), k


def test_hints_with_ties_zeros_infinities_and_nans(gen):
    n = 100
    scores = tricky_rows(gen, n)
    scores[3, 7] = torch.nan  # a NaN row: searched whole, its hint dropped
    for k in (1, 2, 10, 50, n):
        hints = torch.full((50,), float("nan"))
        for _ in range(2):
            same(
                select.select(scores, torch.tensor(k), 12, hints), select.select(scores, torch.tensor(k), 12)
            )
        assert torch.isnan(hints[3]) and not bool(torch.isnan(hints[torch.arange(50) != 3]).any())
    # a NaN in a row whose hint is set: its candidates from the hint are not all the scores >= its k-th
    clean = torch.rand(1, 300, generator=gen)
    hint = torch.full((1,), float("nan"))
    select.select(clean, torch.tensor(5), 5, hint)  # leaves a high hint
    dirty = clean - 0.5
    dirty[0, 0] = torch.nan
    same(select.select(dirty, torch.tensor(5), 5, hint), select.select(dirty, torch.tensor(5), 5))
    with pytest.raises(ValueError, match="hints must be contiguous float32"):
        select.select(scores, torch.tensor(3), 3, torch.zeros(50, dtype=torch.float64))


def test_rows_given_by_number_are_read_where_they_lie(gen):
    """``at`` selects some rows of a batch (in any order, some twice) without copying them: the results of those
    rows selected alone, short rows and long; a bad row number, hints or a 2-d index are refused."""
    for n in (50, 700):
        scores = random_sphere(3, 40, 6, gen) @ random_sphere(3, n, 6, gen).transpose(1, 2)  # (3, 40, n)
        at = torch.tensor([117, 0, 5, 5, 64, 119])
        rows = scores.reshape(-1, n)[at]
        for k, kmax in ((1, 1), (7, 9), (n // 2, 4)):
            same(
                select.select(scores, torch.tensor(k), kmax, at=at),
                select.select(rows, torch.tensor(k), kmax),
            )
    with pytest.raises(ValueError, match="row numbers must lie in"):
        select.select(scores, torch.tensor(1), 1, at=torch.tensor([120]))
    with pytest.raises(ValueError, match="without hints"):
        select.select(scores, torch.tensor(1), 1, torch.zeros(3, 40), at=torch.tensor([0]))
    with pytest.raises(ValueError, match="a 1-d index"):
        select.select(scores, torch.tensor(1), 1, at=torch.zeros(1, 1, dtype=torch.long))


def test_ranks_outside_the_row_are_refused():
    with pytest.raises(ValueError, match=r"ranks must lie in \[1, 5\]"):
        select.select(torch.zeros(2, 5), torch.tensor(6))


@pytest.mark.parametrize(
    "policy",
    [
        {"k": [70, 90, 70, 120]},  # the top-k list path (k > NATIVE_LIST_MAX: the kernel and its hints)
        # the general path (the weights of the top k over the full row), mixed with a short list
        {"k": [300, 2, 500, 600]},
        {"k": [300, 450, 300, 450], "tau": 0.1, "eps": 0.05},  # truncations and uniform traffic together
    ],
)
def test_trajectories_equal_torch_topk_selection(policy, monkeypatch):
    """The kernel changes nothing but the cost: the same choices at every step, the same vectors and the same
    measures as with torch.topk, with duplicated creators so that k-th values tie."""
    gen = torch.Generator().manual_seed(3)
    creators = random_sphere(1, 700, 6, gen)
    creators[:, 600:] = creators[:, :100]  # 100 creators twice: some k-th values tie
    state = State(random_sphere(1, 120, 6, gen), creators)

    def run(native: bool) -> tuple[list[torch.Tensor], Simulation]:
        monkeypatch.setattr(select, "available", lambda device, dtype: native)
        sim = Simulation(  # chunks of 50 users: the hints are taken and written back a chunk at a time
            state,
            Policy(beta=2.0, **policy),
            Dynamics(),
            seeds=[0, 1, 2, 3],
            log_every=5,
            chunk_size=50,
        )
        chosen = [sim.step() for _ in range(25)]
        monkeypatch.undo()
        assert all(block.native == native for _, block in sim._blocks())
        hinted = [c for c in sim._lists.values() if c is not None and c.dim() == 2]  # (R', m) hints
        k = max(policy["k"])
        assert bool(hinted) == (native and "tau" not in policy and k <= 256 and select.hints_pay(k, 700))
        return chosen, sim

    (fast, a), (slow, b) = run(True), run(False)
    assert_same_runs((fast, slow), (a, b))


def truncated_probabilities(row: torch.Tensor, k: int, tau: float, beta: float) -> torch.Tensor:
    """The spec's truncated softmax of one row in float64: the scores at least the k-th largest (ties included)
    and at least tau; a uniform creator when none is."""
    s = row.double()
    eligible = (s >= s.topk(k).values[-1]) & (s >= tau)
    if not bool(eligible.any()):
        return torch.full_like(s, 1 / s.numel())
    w = torch.exp(beta * (s - s[eligible].max())) * eligible
    return w / w.sum()


@pytest.mark.parametrize("proposals", [0, 1, 16])
def test_truncated_draws_follow_the_dense_probabilities(proposals):
    """Chi-square of 20,000 draws a row against the truncated softmax, with many proposals (almost always
    accepted), one (often the inverse-CDF draw after it) and none (the inverse-CDF draw alone)."""
    gen = torch.Generator().manual_seed(7)
    n, trials = 40, 20_000
    scores = torch.rand(7, n, generator=gen) * 2 - 1
    scores[1, [3, 9, 17, 30]] = 0.7  # the 10-th largest ties with others: every tie is eligible
    scores[1, scores[1] > 0.7] = 0.9
    k = torch.tensor([5, 10, n, n, 3, n, 30])
    tau = torch.tensor([-math.inf, -math.inf, 0.3, 1.5, 0.0, -math.inf, 0.2])  # 1.5: none eligible, uniform
    beta = torch.tensor([1.0, 2.0, 3.0, 1.0, 0.0, 2.5, 1.0])
    lists = None if proposals == 0 else torch.rand(trials, 7, proposals, generator=gen, dtype=torch.float64)
    chosen, thresholds = select.draw_truncated(
        scores.expand(trials, -1, -1), k, tau, beta, torch.rand(trials, 7, generator=gen), lists
    )  # (trials, 7) each
    kth = scores.sort(-1, descending=True).values.gather(-1, (k - 1).view(-1, 1)).squeeze(-1)  # (7,)
    kth = torch.where(k == n, -math.inf, kth)  # (k = n: no truncation)
    assert torch.equal(thresholds, torch.maximum(kth, tau).expand(trials, -1))
    for r in range(7):
        p = truncated_probabilities(scores[r], int(k[r]), float(tau[r]), float(beta[r]))
        counts = torch.bincount(chosen[:, r], minlength=n).double()
        live = p > 0
        assert counts[~live].sum() == 0, r  # an ineligible creator is never drawn
        stat = ((counts - trials * p)[live] ** 2 / (trials * p)[live]).sum().item()
        dof = int(live.sum()) - 1
        assert stat < dof + 6 * math.sqrt(2 * max(dof, 1)), (r, stat, dof)  # about 6 sigma


def test_truncated_draw_maps_proposals_and_uniforms_as_documented():
    """A proposal p picks the eligible creator floor(p c) of the c in index order and accepts it when
    frac(p c) < exp(beta (s - smax)); with none accepted, the inverse-CDF draw of u over the eligible weights."""
    s = torch.tensor([[0.1, 0.9, -0.5, 0.4, 0.8, 0.0]])  # top 3: creators 1, 4, 3
    k, beta = torch.tensor(3), torch.tensor(2.0)
    one = torch.ones(1, dtype=torch.float64)

    def draw(p: list[float], u: float) -> int:
        return int(
            select.draw_truncated(s, k, -math.inf, beta, one * u, torch.tensor([p], dtype=torch.float64))[0]
        )

    assert [draw([i / 3], 0.0) for i in range(3)] == [1, 3, 4]  # frac 0: always accepted
    accept_3 = math.exp(2.0 * (0.4 - 0.9))  # creator 3's acceptance probability, 0.37
    assert draw([(1 + 0.99 * accept_3) / 3], 0.0) == 3
    w = torch.exp(2.0 * (s[0].double() - 0.9)) * torch.tensor([0, 1, 0, 1, 1, 0.0], dtype=torch.float64)
    cdf = w.cumsum(0) / w.sum()
    for u in (0.0, 0.2, 0.5, 0.8, 0.999):
        expected = int((cdf <= u).sum())  # the inverse CDF
        assert draw([(1 + 1.01 * accept_3) / 3], u) == expected  # rejected: the uniform decides
        assert int(select.draw_truncated(s, k, -math.inf, beta, one * u, None)[0]) == expected
    assert int(select.draw_truncated(s, 6, 0.95, beta, one * 0.55, None)[0]) == 3  # none eligible: floor(u n)


def test_truncated_draw_flags_nan_rows_and_refuses_bad_ranks():
    s = torch.rand(3, 10)
    s[1, 4] = math.nan
    out, thresholds = select.draw_truncated(s, torch.tensor([2, 2, 10]), -math.inf, 1.0, torch.rand(3), None)
    assert out[1] == -1 and bool((out[[0, 2]] >= 0).all()) and bool(thresholds[1].isnan())
    out, _ = select.draw_truncated(s, 10, 0.0, 1.0, torch.rand(3), torch.rand(3, 4, dtype=torch.float64))
    assert out[1] == -1
    with pytest.raises(ValueError, match=r"ranks must lie in \[1, 10\]"):
        select.draw_truncated(s, torch.tensor(0), -math.inf, 1.0, torch.rand(3), None)
