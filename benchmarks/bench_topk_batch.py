"""The `+experiment=topk` batch on real vectors: unlogged and logged engine steps, where the whole command spends
its simulation time.

The batch is the experiment's: k in {1, 5, 10, n} x 8 seeds (32 replicas), beta = 1, the default dynamics, a
step logged every 10th; ``--ks 1,10,100,500,1000,n`` gives ``+experiment=topk_movielens``'s batch (48 replicas). The starting vectors are a run folder's exported embeddings (``embeddings/users.npz`` and
``items.npz``; e.g. the run of ``python -m rectest.train +experiment=topk data=ml-100k sim.steps=0``: the trained
MF's 943 x 64 users and 1,682 items), or random unit vectors of that shape without ``--run``. Medians over the
steps of each kind, so the early steps (lists built, users moving fast) and the late ones both count.

    .venv/bin/python benchmarks/bench_topk_batch.py [--run outputs/DATE/TIME] [--steps 100] [--threads 2]
        [--ks 1,5,10,n]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere  # noqa: E402

LOG_EVERY = 10


def start(run: Path | None) -> State:
    """The run's exported vectors, or random unit vectors of ml-100k's MF shape."""
    if run is None:
        g = torch.Generator().manual_seed(0)
        return State(random_sphere(1, 943, 64, g), random_sphere(1, 1682, 64, g))
    users, items = (np.load(run / "embeddings" / f"{name}.npz")["vectors"] for name in ("users", "items"))
    return State(torch.from_numpy(users).float()[None], torch.from_numpy(items).float()[None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=Path, help="a run folder with exported embeddings (default: random vectors)"
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ks", default="1,5,10,n", help="the k grid, n for no truncation (8 seeds each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state = start(args.run)
    n = state.creators.shape[1]
    grid = [n if x == "n" else int(x) for x in args.ks.split(",")]
    k = [x for x in grid for _ in range(8)]
    sim = Simulation(
        state, Policy(beta=1.0, k=k), Dynamics(), seeds=list(range(8)) * len(grid), log_every=LOG_EVERY
    )
    times: dict[bool, list[float]] = {False: [], True: []}
    for t in range(args.steps):
        t0 = time.perf_counter()
        sim.step()
        times[t % LOG_EVERY == 0].append(time.perf_counter() - t0)
    unlogged, logged = (statistics.median(times[x]) * 1e3 for x in (False, True))
    source = args.run or "random unit vectors"
    print(
        f"## topk batch: {state.m} users x {n} creators, d = {state.d}, k in {{{args.ks}}} x 8 seeds ({source}), "
        f"{args.threads} thread(s)\n"
    )
    print("| step | median ms | / unlogged |\n|---|---:|---:|")
    print(f"| unlogged | {unlogged:.1f} | 1.00 |")
    print(f"| logged (all measures) | {logged:.1f} | {logged / unlogged:.2f} |")
    total = sum(times[False]) + sum(times[True])
    print(
        f"\n{args.steps} steps in {total:.1f} s ({total / args.steps * 1e3:.0f} ms a step, logged ones included)"
    )


if __name__ == "__main__":
    main()
