"""The engine against a straightforward per-user loop, and the choice of sampler.

1. Samplers: seconds per call of a softmax over the rows (the reference cost) and of drawing one index per
   row with ``torch.multinomial``, inverse CDF (``cumsum`` + ``searchsorted``, what the engine uses) and
   Gumbel-max, on row shapes the engine meets.
2. The paper's synthetic top-k sweep (d=10, n=50, m=100, eta_u=eta_c=0.1; k in {1, 5, 10, 50} x beta in
   {0, 1, 3} x 8 seeds = 96 replicas, T=1000) as ONE batched run, against per-user loops (one replica, one
   user at a time) on the same machine in the same script: one with torch ops per user, and the numpy script a
   researcher writes (``argpartition``, ``rng.choice``): the anchor. The loop is timed on a few steps
   and extrapolated per step (said so in the table).

Other jobs may share the cores: absolute numbers are noisy, the ratios measured side by side matter.
Usage: python benchmarks/bench_sim.py [--steps 1000] [--loop-steps 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere  # noqa: E402
from rectest.sim.sampling import sample_inverse_cdf  # noqa: E402

D, N, M = 10, 50, 100
KS, BETAS, SEEDS = (1, 5, 10, 50), (0.0, 1.0, 3.0), 8


# -- the baselines the engine's inverse-CDF sampler is compared with ------------------------------
def sample_multinomial(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reference sampler via ``torch.multinomial`` (for benchmarks and tests).

    Args:
        weights: ``(..., n)`` non-negative weights.
        generator: optional source of randomness.

    Returns:
        ``(...)`` int64 indices.
    """
    flat = weights.reshape(-1, weights.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(weights.shape[:-1])


def sample_gumbel_max(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reference sampler via the Gumbel-max trick (for benchmarks): needs ``n`` uniforms per row.

    Args:
        weights: ``(..., n)`` non-negative weights.
        generator: optional source of randomness.

    Returns:
        ``(...)`` int64 indices.
    """
    u = torch.rand(weights.shape, generator=generator, dtype=weights.dtype, device=weights.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-30)))
    return (weights.log() + gumbel).argmax(-1)


def best_time(fn, repeats: int = 5) -> float:
    """Fastest of ``repeats`` timed calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def sampler_table() -> None:
    print("## Samplers: seconds per call, and ratio to a softmax over the same rows\n")
    print("| rows x n | softmax | multinomial | inverse CDF (engine) | Gumbel-max |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for rows, n in ((9600, 50), (4096, 2000), (256, 26744)):
        logits = torch.randn(rows, n, generator=g)
        p = torch.softmax(logits, -1)
        u = torch.rand(rows, generator=g)
        t_soft = best_time(lambda logits=logits: torch.softmax(logits, -1))
        cells = [f"{t_soft * 1e3:.2f} ms"]
        for fn in (
            lambda p=p: sample_multinomial(p, g),
            lambda p=p, u=u: sample_inverse_cdf(p, u),
            lambda p=p: sample_gumbel_max(p, g),
        ):
            t = best_time(fn)
            cells.append(f"{t * 1e3:.2f} ms ({t / t_soft:.1f}x)")
        print(f"| {rows} x {n} | " + " | ".join(cells) + " |")
    print()


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm()


def loop_step(users: torch.Tensor, creators: torch.Tensor, beta: float, k: int, g: torch.Generator) -> None:
    """One step for one replica, one user at a time (in place): users (m, d), creators (n, d)."""
    m, n = users.shape[0], creators.shape[0]
    new_users = users.clone()
    pull = torch.zeros_like(creators)
    count = [0] * n
    for j in range(m):
        s = creators @ users[j]
        vals, idx = s.topk(k)
        p = torch.softmax(beta * vals, 0)
        i = int(idx[torch.multinomial(p, 1, generator=g)])
        sign = torch.sign(s[i])
        new_users[j] = unit(users[j] + 0.1 * sign * creators[i])
        pull[i] += sign * users[j]
        count[i] += 1
    for i in range(n):
        if count[i]:
            creators[i] = unit(creators[i] + 0.1 * pull[i] / count[i])
    users.copy_(new_users)


def numpy_loop_step(
    users: np.ndarray, creators: np.ndarray, beta: float, k: int, rng: np.random.Generator
) -> None:
    """The same step as a numpy research script writes it (in place): one Python iteration per user and per
    creator, ``argpartition`` for the top k, ``rng.choice`` for the draw."""
    m, n = users.shape[0], creators.shape[0]
    new_users = users.copy()
    pull = np.zeros_like(creators)
    count = np.zeros(n, dtype=np.int64)
    for j in range(m):
        s = creators @ users[j]
        idx = np.argpartition(-s, k - 1)[:k] if k < n else np.arange(n)
        w = np.exp(beta * (s[idx] - s[idx].max()))
        i = idx[rng.choice(len(idx), p=w / w.sum())]
        sign = np.sign(s[i])
        v = users[j] + 0.1 * sign * creators[i]
        new_users[j] = v / np.linalg.norm(v)
        pull[i] += sign * users[j]
        count[i] += 1
    for i in range(n):
        if count[i]:
            v = creators[i] + 0.1 * pull[i] / count[i]
            creators[i] = v / np.linalg.norm(v)
    users[:] = new_users


def sweep(steps: int, loop_steps: int) -> None:
    grid = [(k, beta) for k in KS for beta in BETAS for _ in range(SEEDS)]
    R = len(grid)
    g = torch.Generator().manual_seed(0)
    state = State(random_sphere(R, M, D, g), random_sphere(R, N, D, g))
    policy = Policy(beta=[b for _, b in grid], k=[k for k, _ in grid])
    print(f"## Top-k sweep: {R} replicas (k x beta x seeds), T={steps}, d={D}, n={N}, m={M}\n")
    print(
        "| threads | batched run | batched s/step | torch loop s/step | speed-up | numpy loop s/step | speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        # the full T-step run with one thread; other thread counts (oversubscribed when other jobs share the
        # cores) are timed on fewer steps and extrapolated per step
        run_steps = steps if threads == 1 else min(steps, 50)
        sim = Simulation(state, policy, Dynamics(eta_u=0.1, eta_c=0.1), seeds=range(R), log_every=steps)
        t0 = time.perf_counter()
        sim.run(run_steps)
        batched = time.perf_counter() - t0
        if threads == 1:
            final = sim.history["TP"][-1]
        users, creators = state.users.clone(), state.creators.clone()
        t0 = time.perf_counter()
        for _ in range(loop_steps):
            for r, (k, beta) in enumerate(grid):
                loop_step(users[r], creators[r], beta, k, g)
        loop = (time.perf_counter() - t0) / loop_steps
        np_users, np_creators = state.users.double().numpy().copy(), state.creators.double().numpy().copy()
        t0 = time.perf_counter()
        for _ in range(loop_steps):
            for r, (k, beta) in enumerate(grid):
                numpy_loop_step(np_users[r], np_creators[r], beta, k, rng)
        np_loop = (time.perf_counter() - t0) / loop_steps
        per_step = batched / run_steps
        print(
            f"| {threads} | {batched:.1f} s for {run_steps} steps | {per_step * 1e3:.1f} ms | {loop:.2f} s "
            f"| {loop / per_step:.0f}x | {np_loop:.2f} s | **{np_loop / per_step:.0f}x** |",
            flush=True,
        )
    print(f"\n(the loops are timed on {loop_steps} steps and extrapolated per step)")
    torch.set_num_threads(default_threads)
    tp = final.view(len(KS), len(BETAS), SEEDS).mean(-1)
    print("\nfinal TP (mean of seeds), rows k, columns beta " + str(BETAS))
    for k, row in zip(KS, tp.tolist(), strict=True):
        print(f"k={k:>3}: " + "  ".join(f"{x:.3f}" for x in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--loop-steps", type=int, default=2)
    args = parser.parse_args()
    print(f"# bench_sim: torch {torch.__version__}, default threads {torch.get_num_threads()}\n")
    sampler_table()
    sweep(args.steps, args.loop_steps)


if __name__ == "__main__":
    main()
