"""The two-tower's full-softmax training step at MovieLens-20M shape: where the time goes, and the floor.

One training step (forward and backward) of ``model=two_tower`` on a batch of 1,024 (user, positive) rows
against all 26,744 items, each row's other training items left out of the denominator (``exclude_positives``;
about 144 per user, MovieLens-20M's mean history). Timed side by side in one process, one thread each:

- ``step (the task's loss)``: ``RecommenderTask._implicit_loss`` as the trainer runs it;
- ``dense (before)``: the same loss from the dense (B, n) scores, mask, ``masked_fill`` and
  ``F.cross_entropy``, as rectest computed it before the fused loss (``rectest/models/full_softmax.py``);
- ``dense, no exclusion``: the dense scores with a plain cross-entropy and nothing left out.

The two losses and their gradients agree (printed). The epoch projection is the step time times
ceil(16,000,210 / 1,024) batches (80% of MovieLens-20M's ratings).

    .venv/bin/python benchmarks/bench_full_softmax.py [--repeats 5] [--batch 1024]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rectest.data.datamodule import pairs_to_mask  # noqa: E402
from rectest.models.task import RecommenderTask  # noqa: E402
from rectest.models.two_tower import TwoTower  # noqa: E402

USERS, ITEMS, HISTORY, TRAIN_ROWS = 138_493, 26_744, 144, 16_000_210


def batch(size: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A batch of (user, positive) rows and each row's seen items as (row, item) pairs (the positive among them)."""
    user = torch.randint(USERS, (size,), generator=g)
    seen = torch.stack([torch.randperm(ITEMS, generator=g)[:HISTORY] for _ in range(size)])  # (B, H)
    pos = seen[:, 0]
    rows = torch.arange(size).repeat_interleave(HISTORY)
    return {
        "user": user,
        "pos": pos,
        "neg": torch.zeros(size, 0, dtype=torch.long),
        "seen": torch.stack([rows, seen.reshape(-1)]),
    }


def dense_mask_loss(task: RecommenderTask, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """The exclusion as a dense mask: the previous implementation."""
    logits = task.net.score_all(b["user"]) / task.hparams.temperature
    seen = pairs_to_mask(b["seen"], len(b["user"]), task.net.num_items)
    others = seen.scatter(1, b["pos"].unsqueeze(-1), False)
    return F.cross_entropy(logits.masked_fill(others, float("-inf")), b["pos"])


def floor_loss(task: RecommenderTask, b: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(task.net.score_all(b["user"]) / task.hparams.temperature, b["pos"])


def timed(task: RecommenderTask, loss_fn, b, repeats: int) -> tuple[float, torch.Tensor, list[torch.Tensor]]:
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        task.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss = loss_fn(task, b)
        loss.backward()
        times.append(time.perf_counter() - start)
    grads = [p.grad.detach().clone() for p in task.parameters() if p.grad is not None]
    return statistics.median(times[1:]), loss.detach(), grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = TwoTower(USERS, ITEMS, dim=16, id_dim=64, hidden=[64])
    task = RecommenderTask(net, feedback="implicit", loss="full_softmax", temperature=0.2)
    b = batch(args.batch, g)
    rows = {
        "step (the task's loss)": lambda t, x: t._implicit_loss(x),
        "dense (before)": dense_mask_loss,
        "dense, no exclusion": floor_loss,
    }
    results = {name: timed(task, fn, b, args.repeats) for name, fn in rows.items()}
    new, old = results["step (the task's loss)"], results["dense (before)"]
    loss_gap = abs(float(new[1]) - float(old[1]))
    grad_gap = max(float((a - c).abs().max()) for a, c in zip(new[2], old[2], strict=True))
    floor = results["dense (before)"][0]
    batches = math.ceil(TRAIN_ROWS / args.batch)
    print(
        f"two-tower full softmax, batch {args.batch} x {ITEMS:,} items, {HISTORY} seen items per row, one thread"
    )
    print(f"| loss | ms per step (median of {args.repeats}) | / before | epoch (projected) |")
    print("|---|---:|---:|---:|")
    for name, (seconds, _, _) in results.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / floor:.2f} | {seconds * batches / 60:.0f} min |")
    print(f"\nthe two losses agree to {loss_gap:.1e}; their gradients to {grad_gap:.1e}")


if __name__ == "__main__":
    main()
