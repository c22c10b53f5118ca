"""MovieLens-20M scale on CPU: seconds per step, peak memory and the fraction of the machine's floor.

m = 138,493 users, n = 26,744 creators, d = 16, one replica. The floor of one step is measured in the
same run on the engine's chunk shape: the m x n x d score matmul at this machine's matmul FLOP/s plus one
``exp`` over the m x n scores. Peak memory is the process's peak resident set (``ru_maxrss``), reported
with the baseline before the simulation starts. Numbers are noisy when other jobs share the cores, so
every time is the fastest of several tries (floor chunks: 5; steps: ``--steps``), and the floor is measured
again after the steps and the faster of the two is kept: the fractions, measured side by side, are what
matter.

Usage: python benchmarks/bench_sim_scale.py [--steps 2] [--chunk 4096] [--m 138493] [--n 26744]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_sim import best_time  # noqa: E402  (this folder is on sys.path when run as a script)

from rectest.sim import Dynamics, Policy, Simulation, State, native, random_sphere  # noqa: E402
from rectest.sim.engine import CPU_MAX_CHUNK_ELEMENTS  # noqa: E402


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def floor_seconds(m: int, n: int, d: int, chunk: int) -> tuple[float, float, float, float]:
    """Matmul and exp floors of one step, from one chunk's timings scaled to all m users."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, chunk, d, generator=g)
    v_t = torch.randn(1, d, n, generator=g)
    out = torch.empty(1, chunk, n)
    t_mm = best_time(lambda: torch.matmul(u, v_t, out=out))
    t_exp = best_time(lambda: torch.exp(out, out=out))
    scale = m / chunk
    flops = 2 * chunk * n * d / t_mm
    exps = chunk * n / t_exp
    return t_mm * scale, t_exp * scale, flops, exps


def time_steps(sim: Simulation, steps: int) -> float:
    """Fastest of ``steps`` unlogged steps (after one warm-up step): the least disturbed by other jobs."""
    sim.step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        sim.step()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=138_493)
    parser.add_argument("--n", type=int, default=26_744)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=4096)
    args = parser.parse_args()
    m, n, d = args.m, args.n, args.d
    native.keep_freed_memory()  # the engine's allocator setting, for the floor too (it is process-wide)
    rows = min(args.chunk, max(1, CPU_MAX_CHUNK_ELEMENTS // n))  # the engine's chunk on CPU
    print(
        f"# MovieLens-20M scale: m={m:,} n={n:,} d={d}, {rows} users per chunk, threads={torch.get_num_threads()}"
    )
    t_mm, t_exp, flops, exps = floor_seconds(m, n, d, rows)  # the floor on the engine's own chunk shape
    floor = t_mm + t_exp
    print(f"machine: matmul {flops / 1e9:.1f} GFLOP/s, exp {exps / 1e9:.2f} G/s")
    print(f"floor per step: matmul {t_mm:.2f} s + exp {t_exp:.2f} s = {floor:.2f} s\n")

    g = torch.Generator().manual_seed(0)
    state = State(random_sphere(1, m, d, g), random_sphere(1, n, d, g))
    base = peak_rss_gb()
    print(f"baseline peak RSS (state + libraries): {base:.2f} GB")
    results = []
    for name, policy in (
        ("softmax beta=1", Policy(beta=1.0)),
        ("top-k k=100 beta=1", Policy(beta=1.0, k=100)),
    ):
        sim = Simulation(state, policy, Dynamics(), seeds=[0], chunk_size=args.chunk, log_every=10**9)
        sec = time_steps(sim, args.steps)
        results.append((name, sec, peak_rss_gb()))
    t_mm2, t_exp2, _, _ = floor_seconds(m, n, d, rows)
    floor = min(floor, t_mm2 + t_exp2)
    print(f"floor per step, measured again after the steps: {t_mm2 + t_exp2:.2f} s; kept {floor:.2f} s\n")
    print("| policy | s/step | floor/step | fraction of floor | peak RSS GB |")
    print("|---|---|---|---|---|")
    for name, sec, rss in results:
        print(f"| {name} | {sec:.2f} | {floor:.2f} | {floor / sec:.0%} | {rss:.2f} |", flush=True)
    sim = Simulation(state, Policy(beta=1.0), Dynamics(), seeds=[0], chunk_size=args.chunk, log_every=1)
    t0 = time.perf_counter()
    sim.step()
    print(
        f"| softmax, logged step (all 7 measures) | {time.perf_counter() - t0:.2f} | | | {peak_rss_gb():.2f} |"
    )


if __name__ == "__main__":
    main()
