"""GPU check: CPU and CUDA agree on a deterministic trajectory; MovieLens-20M-scale timings on the GPU.

Three sections, each printing a table (and a pass / fail line for the first):

1. **Agreement.** The engine with ``beta = inf`` (top-1, no randomness), one initial state and seed, on the
   CPU and on CUDA: the recommended creators at every step, the largest difference of the final vectors
   and of the measures. float64 must agree exactly in its choices and to 1e-9 in its vectors (the gate);
   float32 is reported. TF32 is switched off. Also: the sharded simulation (a world of one) on CUDA draws
   what the engine draws on CUDA for a sampled policy.
2. **Simulation at MovieLens-20M scale** on CUDA: 138,493 users, d = 16, the 2,000 most-rated movies as
   creators with 8 seeds as replicas (the paper's MovieLens experiment), and all 26,744 movies with one
   replica. Seconds per unlogged and per logged step (the fastest of several), a whole T-step run, and
   peak GPU memory.
3. **Training** on CUDA through ``rectest.models.fit.fit``: one epoch of MF and of the two-tower net (the
   shipped ``conf/model`` hyperparameters, read with PyYAML) on a synthetic 20M-rating log shaped like
   ML-20M. Rows per second.

Sized to finish within 5 minutes on one H200 (``--budget-s``: a section that would start after the budget
is skipped with a message). Needs only torch for sections 1-2 and pytorch-lightning, numpy and PyYAML for
section 3 (no Hydra); it installs nothing and imports the repo's code from this checkout.

Without CUDA it prints why it skips and exits 0. ``--device cpu`` runs every section on the CPU at
tiny sizes instead (both sides of section 1 on the CPU), to check the script on a machine without a
GPU. Exit status: 0 when the gate passes or the check is skipped, 1 when CPU and CUDA disagree or a
section fails.

Usage: bash benchmarks/gpu_check.sh [--quick] [--budget-s 280] [--json results.json] [--device cpu]
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere  # noqa: E402
from rectest.sim.shards import UserShards  # noqa: E402

ML20M_USERS, ML20M_MOVIES, TOP_MOVIES, DIM = 138_493, 26_744, 2_000, 16
FULL = {"agree": (2_000, 300, 200), "users": ML20M_USERS, "steps": 500, "rows": 20_000_000, "tries": 5}
QUICK = {"agree": (500, 60, 60), "users": 20_000, "steps": 50, "rows": 1_000_000, "tries": 3}
CPU = {"agree": (200, 30, 30), "users": 2_000, "steps": 5, "rows": 100_000, "tries": 1}  # the script check


class Report:
    """Collects every section's rows for the optional JSON file; prints markdown tables."""

    def __init__(self) -> None:
        self.sections: dict[str, list[dict]] = {}
        self.failed: list[str] = []

    def table(self, section: str, rows: list[dict]) -> None:
        self.sections[section] = rows
        if not rows:
            return
        cols = list(rows[0])
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for row in rows:
            print("| " + " | ".join(_fmt(row[c]) for c in cols) + " |", flush=True)


def _fmt(x: object) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.3f}"
    return str(x)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def initial_state(m: int, n: int, dtype: torch.dtype, device: torch.device) -> State:
    """One replica of users and creators i.i.d. uniform on the sphere, drawn on the CPU (the same on every
    device); a simulation copies it to each of its replicas."""
    g = torch.Generator().manual_seed(0)
    users, creators = random_sphere(1, m, DIM, g, dtype), random_sphere(1, n, DIM, g, dtype)
    return State(users.to(device), creators.to(device))


# -- 1. agreement ----------------------------------------------------------------------------------------------
def trajectory(state: State, steps: int) -> tuple[torch.Tensor, Simulation]:
    """``(T, R, m)`` choices of a top-1 run with a log every 10 steps."""
    sim = Simulation(state, Policy(beta=math.inf), Dynamics(), seeds=[0], log_every=10)
    chosen = torch.stack([sim.step(log=t == steps - 1).cpu() for t in range(steps)])
    return chosen, sim


def agreement(report: Report, device: torch.device, sizes: tuple[int, int, int]) -> None:
    m, n, steps = sizes
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"\n## 1. CPU vs {device.type}: top-1 (beta=inf), m={m}, n={n}, d={DIM}, {steps} steps, seed 0\n")
    rows = []
    for dtype in (torch.float64, torch.float32):
        cpu_chosen, cpu = trajectory(initial_state(m, n, dtype, torch.device("cpu")), steps)
        dev_chosen, dev = trajectory(initial_state(m, n, dtype, device), steps)
        same = (cpu_chosen == dev_chosen).all(dim=(1, 2))  # (T,)
        first = int((~same).nonzero()[0]) if not bool(same.all()) else -1
        hist_cpu, hist_dev = cpu.history, dev.history
        rows.append(
            {
                "dtype": str(dtype).removeprefix("torch."),
                "choices equal": f"{float((cpu_chosen == dev_chosen).double().mean()):.6f}",
                "first differing step": first,
                "max abs users diff": float((cpu.users - dev.users.cpu()).abs().max()),
                "max abs creators diff": float((cpu.creators - dev.creators.cpu()).abs().max()),
                "max abs CD/RD/RR/TP diff": max(
                    float((hist_cpu[k] - hist_dev[k]).abs().max()) for k in ("CD", "RD", "RR", "TP")
                ),
            }
        )
    report.table("agreement", rows)
    gate = rows[0]
    ok = (
        gate["first differing step"] == -1
        and gate["max abs users diff"] < 1e-9
        and gate["max abs creators diff"] < 1e-9
    )
    # the sharded code path on the device: a world of one draws what the engine draws (sampled policy)
    state = initial_state(m, n, torch.float32, device)
    policy = Policy(beta=[1.0, 4.0], k=[n, 10])
    engine = Simulation(state, policy, Dynamics(), seeds=[1, 2])
    sharded = Simulation(state, policy, Dynamics(), seeds=[1, 2], shards=UserShards(m))
    sharded_ok = all(torch.equal(engine.step(), sharded.step()) for _ in range(20))
    print(f"\nsharded simulation (world of one) draws what the engine draws on {device.type}: {sharded_ok}")
    verdict = "PASS" if ok and sharded_ok else "FAIL"
    print(
        f"agreement gate (float64 choices identical, vectors within 1e-9; sharded draws identical): {verdict}"
    )
    if verdict == "FAIL":
        report.failed.append("agreement")


# -- 2. simulation at scale --------------------------------------------------------------------------------------
def best_step(sim: Simulation, tries: int, device: torch.device, log: bool) -> float:
    """Fastest of ``tries`` steps after one warm-up step."""
    sim.step(log=log)
    times = []
    for _ in range(tries):
        sync(device)
        t0 = time.perf_counter()
        sim.step(log=log)
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def simulation(report: Report, device: torch.device, users: int, steps: int, tries: int) -> None:
    print(f"\n## 2. Simulation on {device.type}: m={users:,} users, d={DIM}, float32\n")
    cases = [
        (TOP_MOVIES, 8, "softmax beta=1", Policy(beta=1.0), 8192),
        (TOP_MOVIES, 8, "softmax beta=1", Policy(beta=1.0), 65536),
        (TOP_MOVIES, 8, "top-k k=10 beta=1", Policy(beta=1.0, k=10), 8192),
        (TOP_MOVIES, 8, "top-1 (beta=inf)", Policy(beta=math.inf), 8192),
        (ML20M_MOVIES, 1, "softmax beta=1", Policy(beta=1.0), 8192),
        (ML20M_MOVIES, 1, "top-k k=100 beta=1", Policy(beta=1.0, k=100), 8192),
    ]
    rows = []
    for n, replicas, name, policy, chunk in cases:
        state = initial_state(users, n, torch.float32, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sim = Simulation(
            state, policy, Dynamics(), seeds=list(range(replicas)), chunk_size=chunk, log_every=10**9
        )
        plain = best_step(sim, tries, device, log=False)
        logged = best_step(sim, max(1, tries // 2), device, log=True)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        rows.append(
            {
                "creators n": n,
                "replicas R": replicas,
                "policy": name,
                "chunk": chunk,
                "s/step": plain,
                "s/logged step": logged,
                "user-creator pairs/s": users * n * replicas / plain,
                "peak GPU GiB": peak,
            }
        )
        del sim, state
    report.table("simulation_steps", rows)
    # the paper's MovieLens experiment as one batched run: 2,000 creators, 8 seeds, log every 10 steps
    state = initial_state(users, TOP_MOVIES, torch.float32, device)
    runs = []
    for name, policy in (("top-k k=10 beta=1", Policy(beta=1.0, k=10)), ("softmax beta=1", Policy(beta=1.0))):
        sim = Simulation(state, policy, Dynamics(), seeds=list(range(8)), log_every=10)
        sync(device)
        t0 = time.perf_counter()
        hist = sim.run(steps)
        sync(device)
        runs.append(
            {
                "run": f"{name}, n={TOP_MOVIES}, R=8, T={steps}, log_every=10",
                "seconds": time.perf_counter() - t0,
                "final TP (mean of 8)": float(hist["TP"][-1].mean()),
                "final RD (mean of 8)": float(hist["RD"][-1].mean()),
            }
        )
    print()
    report.table("simulation_runs", runs)


# -- 3. training -------------------------------------------------------------------------------------------------
def model_conf(name: str) -> dict:
    """``conf/model/<name>.yaml`` as plain dicts, with its ``${model.KEY}`` references filled in."""
    import yaml

    conf = yaml.safe_load((REPO / "conf" / "model" / f"{name}.yaml").read_text())

    def fill(node: dict) -> dict:
        out = {}
        for key, value in node.items():
            ref = re.fullmatch(r"\$\{model\.(\w+)\}", value) if isinstance(value, str) else None
            out[key] = conf[ref.group(1)] if ref else value
        return out

    return {**conf, "net": fill(conf["net"]), "task": fill(conf["task"])}


def build(node: dict, **extra: object) -> object:
    """Instantiate a ``_target_`` node (``_partial_`` ignored: every argument is given here)."""
    module, _, cls = node["_target_"].rpartition(".")
    args = {k: v for k, v in node.items() if not k.startswith("_")}
    return getattr(importlib.import_module(module), cls)(**{**args, **extra})


def synthetic_log(rows: int):  # -> Interactions
    """An ML-20M-shaped log: 138,493 users x 26,744 items, Zipf-like popularity, rank-8 ratings."""
    import numpy as np

    from rectest.data.interactions import Interactions

    m, n = ML20M_USERS, ML20M_MOVIES
    gen = torch.Generator().manual_seed(0)
    user = torch.randint(m, (rows,), generator=gen)
    popularity = 1.0 / torch.arange(1, n + 1, dtype=torch.float64) ** 0.8  # (n,)
    cdf = torch.cumsum(popularity / popularity.sum(), 0)
    item = torch.searchsorted(cdf, torch.rand(rows, generator=gen, dtype=torch.float64)).clamp_max(n - 1)
    u, v = torch.randn(m, 8, generator=gen) / 8**0.5, torch.randn(n, 8, generator=gen)
    rating = (3.5 + (u[user] * v[item]).sum(-1)).clamp(0.5, 5.0)
    return Interactions(
        user.numpy(), item.numpy(), rating.float().numpy(), None, np.arange(m), np.arange(n), name="syn20M"
    )


def training(report: Report, device: torch.device, rows: int, seconds_left: Callable[[], float]) -> None:
    import dataclasses
    import logging
    import warnings

    import numpy as np
    import pytorch_lightning as pl

    from rectest.data.datamodule import InteractionDataModule
    from rectest.data.interactions import Split
    from rectest.models.fit import fit

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")

    class EpochTimer(pl.Callback):
        def __init__(self) -> None:
            self.seconds = float("nan")
            self.steps = 0

        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            sync(device)
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, *args: object) -> None:
            self.steps += 1

        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            sync(device)
            self.seconds = time.perf_counter() - self._t0

    print(
        f"\n## 3. Training on {device.type}: one epoch over a synthetic {rows:,}-rating ML-20M-shaped log\n"
    )
    explicit = synthetic_log(rows)
    none = np.zeros(0, dtype=np.int64)
    out = []
    for name in ("mf", "two_tower"):
        conf = model_conf(name)
        log = explicit
        if conf["feedback"] == "implicit":  # every rating a positive
            log = dataclasses.replace(explicit, rating=np.ones_like(explicit.rating))
        split = Split(train=log, val=log.take(none), test=log.take(none))
        for batch in (16_384, int(conf["batch_size"])):  # a GPU-sized batch first, then the shipped one
            if seconds_left() <= 0:
                print(f"{name} batch {batch}: SKIPPED (over the time budget)")
                continue
            pl.seed_everything(0, verbose=False)
            net = build(conf["net"], num_users=ML20M_USERS, num_items=ML20M_MOVIES)
            task = build(conf["task"], net=net)
            negatives, exclude = int(conf["num_negatives"]), bool(conf["exclude_positives"])
            dm = InteractionDataModule(split, conf["feedback"], batch, negatives, 0, exclude)
            timer = EpochTimer()

            def make_trainer(timer: EpochTimer = timer, **kwargs: object) -> pl.Trainer:
                callbacks = [*kwargs.pop("callbacks", []), timer]
                accelerator = "gpu" if device.type == "cuda" else "cpu"
                return pl.Trainer(
                    max_epochs=1, accelerator=accelerator, devices=1, enable_progress_bar=False,
                    enable_model_summary=False, callbacks=callbacks, **kwargs,
                )  # fmt: skip

            with tempfile.TemporaryDirectory() as run_dir:
                fit(task, dm, make_trainer, run_dir, patience=1)
            out.append(
                {
                    "model": name,
                    "loss": conf["task"]["loss"],
                    "batch": batch,
                    "negatives": int(conf["num_negatives"]),
                    "steps": timer.steps,
                    "epoch s": timer.seconds,
                    "ratings/s": rows / timer.seconds,
                }
            )
    report.table("training", out)


# -- main --------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a minute on a GPU)")
    parser.add_argument(
        "--device", default="cuda", choices=["cuda", "cpu"], help="cpu: check the script itself"
    )
    parser.add_argument("--budget-s", type=float, default=280.0, help="skip sections that would start later")
    parser.add_argument("--json", default=None, help="also write every table to this JSON file")
    parser.add_argument(
        "--sections", nargs="+", default=["agree", "sim", "train"], choices=["agree", "sim", "train"]
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: SKIP: CUDA is not available (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}); nothing to check on this machine")  # fmt: skip
        return 0
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny problems: extra threads only add overhead on a shared machine
    sizes = CPU if device.type == "cpu" else QUICK if args.quick else FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (script check only)"
    print(
        f"# gpu_check on {name}: torch {torch.__version__}, {'full' if sizes is FULL else 'quick' if sizes is QUICK else 'tiny'} sizes"
    )
    start = time.perf_counter()
    report = Report()
    sections: dict[str, Callable[[], None]] = {
        "agree": lambda: agreement(report, device, sizes["agree"]),
        "sim": lambda: simulation(report, device, sizes["users"], sizes["steps"], sizes["tries"]),
        "train": lambda: training(
            report, device, sizes["rows"], lambda: args.budget_s - (time.perf_counter() - start)
        ),
    }
    for key in args.sections:
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            print(f"\n{key}: SKIPPED: {elapsed:.0f} s spent, over the budget of {args.budget_s:.0f} s")
            continue
        try:
            sections[key]()
        except Exception:  # report and go on: one failing section must not hide the others' numbers
            traceback.print_exc()
            print(f"\n{key}: FAILED (traceback above)")
            report.failed.append(key)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; failed: {report.failed or 'none'}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": name, **report.sections, "failed": report.failed}, indent=1)
        )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
