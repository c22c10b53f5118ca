"""Every policy's engine step against the machine's floor for the same shape, side by side in one process.

For each shape (the ml-100k shape: 943 users x 1,682 creators, d = 16, 48 replicas; the MovieLens-20M shape:
138,493 x 2,000, d = 16, one replica) and each policy (softmax, top-k at k = 1, 10, 100, 1000, threshold,
uniform traffic, the diversity-aware objective rho, MMR), it times an unlogged and a logged engine step (in
turn, after a warm-up of each; the fastest of each), and the floor: the score matmul plus one exp pass over the
same scores, in the engine's chunking (blocks of replicas, chunks of users: what any sampler of a softmax-family
policy must at least do). Ratios are printed so
a busy machine still reads true. Every replica starts from its own random vectors, so each costs its own work;
the last row is top-1 with every seed from one start, as real-data runs start (rectest/sim/twins.py).

Other jobs may share the cores: read the ratios. Usage:
    python benchmarks/bench_policies.py [--shape ml100k|ml20m|both] [--repeats 3] [--threads 1]
        [--only top-10,top-100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sim import best_time as best  # noqa: E402  (fastest of n timed calls after a warm-up)

from rectest.sim import Dynamics, Policy, Simulation, State, native, random_sphere  # noqa: E402
from rectest.sim.engine import CPU_MAX_CHUNK_ELEMENTS, CPU_MIN_CHUNK_ROWS  # noqa: E402

SHAPES = {"ml100k": (943, 1682, 16, 48), "ml20m": (138_493, 2000, 16, 1)}
POLICIES = {
    "softmax": {},
    "top-1": {"k": 1},
    "top-10": {"k": 10},
    "top-100": {"k": 100},
    "top-1000": {"k": 1000},
    "threshold 0.5": {"tau": 0.5},
    "uniform traffic 0.1": {"eps": 0.1},
    "rho 0.5": {"rho": 0.5},
    "MMR 0.5 (k = 10)": {"k": 10, "mmr_lambda": 0.5},
}


def floor(users: torch.Tensor, creators: torch.Tensor, replicas: int) -> float:
    """One pass of the score matmul and one exp over every score, in the engine's CPU blocks and chunks."""
    m, n = users.shape[1], creators.shape[1]
    block = min(replicas, max(1, CPU_MAX_CHUNK_ELEMENTS // (min(m, CPU_MIN_CHUNK_ROWS) * n)))
    rows = max(1, CPU_MAX_CHUNK_ELEMENTS // (block * n))
    creators_t = creators.transpose(1, 2).contiguous()  # as the engine: a transposed view is slower
    for r in range(0, replicas, block):
        for a in range(0, m, rows):
            (users[r : r + block, a : a + rows] @ creators_t[r : r + block]).exp_()
    return 0.0


def interleaved(sim: Simulation, repeats: int) -> tuple[float, float]:
    """The fastest unlogged and the fastest logged step, timed in turn (unlogged, logged, unlogged, ...) after one
    warm-up of each, so that both meet the same stretch of the trajectory (the candidate lists and hints settle
    over the first steps from random vectors)."""
    sim.step()
    sim.step(log=True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for log in (False, True):
            t0 = time.perf_counter()
            sim.step(log=log)
            times[log].append(time.perf_counter() - t0)
    return min(times[False]), min(times[True])


def table(shape: str, repeats: int, only: list[str] | None = None) -> None:
    m, n, d, replicas = SHAPES[shape]
    g = torch.Generator().manual_seed(0)
    state = State(random_sphere(replicas, m, d, g), random_sphere(replicas, n, d, g))  # one start each
    users, creators = state.users, state.creators
    t_floor = best(lambda: floor(users, creators, replicas), repeats)
    print(f"\n## {shape} shape: m = {m:,}, n = {n:,}, d = {d}, {replicas} replica(s)\n")
    print(f"floor (score matmul + one exp over the same scores): {t_floor * 1e3:.1f} ms\n")
    print("| policy | unlogged step | / floor | logged step | logged / unlogged |")
    print("|---|---:|---:|---:|---:|")
    one_start = State(state.users[:1], state.creators[:1])
    runs = [(name, params, state) for name, params in POLICIES.items() if only is None or name in only]
    if replicas > 1 and only is None:
        runs.append(("top-1, every seed from one start (twins)", {"k": 1}, one_start))
    for name, params, start in runs:
        policy = Policy(beta=1.0, **params)
        sim = Simulation(
            start, policy, Dynamics(eta_u=0.1, eta_c=0.1), seeds=list(range(replicas)), log_every=10**9
        )
        t_step, t_log = interleaved(sim, repeats)
        print(
            f"| {name} | {t_step * 1e3:.1f} ms | {t_step / t_floor:.2f} | {t_log * 1e3:.1f} ms | "
            f"{t_log / t_step:.2f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=[*SHAPES, "both"], default="ml100k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--only", help=f"comma-separated policies (default: all of {', '.join(POLICIES)}, and the twins row)"
    )
    args = parser.parse_args()
    only = None if args.only is None else args.only.split(",")
    if only is not None and not set(only) <= set(POLICIES):
        parser.error(f"--only {args.only}: expected names among {', '.join(POLICIES)}")
    torch.set_num_threads(args.threads)
    kept = (
        native.keep_freed_memory()
    )  # the engine's allocator setting, for the floor too (it is process-wide)
    print(f"torch {torch.__version__}, {args.threads} thread(s), freed memory kept for reuse: {kept}")
    for shape in SHAPES if args.shape == "both" else [args.shape]:
        table(shape, args.repeats, only)


if __name__ == "__main__":
    main()
