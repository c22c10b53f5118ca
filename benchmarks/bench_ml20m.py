"""MovieLens-20M at full scale on CPU: every stage of ``+experiment=topk_movielens data=ml-20m``, timed.

The ml-20m archive is not on these machines, so this builds (or reuses) a synthetic 20,000,263-row
``ml-20m/ratings.csv`` of the same shape (138,493 users, 26,744 movies; the generator of
``benchmarks/bench_data.py``) under ``.bench/`` (git-ignored) and measures, each stage in a fresh Python
process so that its peak resident set (``ru_maxrss``) is its own:

    parse + cache     load_movielens("ml-20m") with an empty parquet cache, then the reload from the cache
    train epoch       the configured two-tower (and MF) on the full training split: a fixed number of
                      batches through the real Lightning Trainer, extrapolated to the epoch
    evaluation        full-ranking Recall@10 / NDCG@10 (train items excluded) on the first batches of
                      validation users, extrapolated to every user with held-out items
    export            unit-norm user and item vectors written and read back
    sim steps         one step of softmax and of top-k (k=100) at 138,493 users x 2,000 creators, d=16, one
                      replica, and one logged step (all measures); the experiment's k grid as one batched
                      run (one seed per k; the full run has ``sim.seeds`` seeds per k, scaled linearly)
    projection        the full experiment on this CPU: epochs x (train epoch + validation) + test + export
                      + T steps of the batched grid (every ``--log-every``-th step logged)

The configuration is the real one (``conf/`` composed with Hydra), so the numbers follow the shipped
batch sizes, negatives, k grid, seeds and horizon. Times are noisy when other jobs share the cores; the
load average at the start and the end is printed with the table.

Usage:
    .venv/bin/python benchmarks/bench_ml20m.py [--quick] [--all-movies] [--log-every 10] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from benchmarks.bench_data import BENCH, ITEMS, ROWS, USERS, generate  # noqa: E402

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from rectest.data.bundle import DataBundle

RELEASE = "ml-20m"
EXPERIMENT = "topk_movielens"  # the paper's MovieLens top-k grid: two-tower, 2000 creators, T=500
SHARED_ROOT = BENCH / "data"  # where bench_data.py --keep leaves its CSV (reused when the size matches)
CACHE_ENV = "RECTEST_CACHE"
TOPK_K = 100
WARMUP_BATCHES = 5
CHILD_TIMEOUT_S = 3600
STATE_COPIES = 3  # live (R, m+n, d) vectors at the peak of a step: current, updated, and one temporary


@dataclass(frozen=True)
class Sizes:
    """How much of each stage to run.

    Attributes:
        rows: ratings in the synthetic log.
        sim_users: simulated users m (all 138,493 in the full run).
        train_batches: training batches timed per model (extrapolated to the epoch).
        eval_batches: validation batches of 1024 users timed (extrapolated to all users).
        repeats: timed simulation steps per policy (the fastest is kept) after one warm-up step.
    """

    rows: int
    sim_users: int
    train_batches: int
    eval_batches: int
    repeats: int


FULL = Sizes(rows=ROWS, sim_users=USERS, train_batches=150, eval_batches=4, repeats=2)
QUICK = Sizes(rows=300_000, sim_users=4_000, train_batches=12, eval_batches=2, repeats=1)


def peak_gib() -> float:
    """Peak resident set of this process so far, in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def row(stage: str, seconds: float, notes: str, **values: Any) -> dict:
    """One table row measured in this process (its peak RSS so far attached)."""
    return {"stage": stage, "seconds": seconds, "peak_gib": peak_gib(), "notes": notes, **values}


# ------------------------------------------------------------------------------------------------ config
def compose_config(root: Path, model: str | None = None) -> DictConfig:
    """The experiment's config for the ml-20m log under ``root`` (Hydra compose, as the CLI would)."""
    from hydra import compose, initialize_config_dir

    import rectest.pipeline.compose  # noqa: F401  (registers the schemas)

    overrides = [f"+experiment={EXPERIMENT}", f"data={RELEASE}", f"data.path={root}", "data.download=false"]
    if model is not None:
        overrides.append(f"model={model}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def load_bundle(cfg: DictConfig) -> tuple[DataBundle, float]:
    """The configured data option (load through the parquet cache + split); returns (bundle, seconds)."""
    from rectest.pipeline.compose import build_spec

    start = time.perf_counter()
    bundle = build_spec(cfg).data()
    return bundle, time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ stages
def stage_generate(p: dict) -> list[dict]:
    seconds = generate(Path(p["root"]), p["rows"])
    return [row("generate synthetic CSV", seconds, f"{p['rows']:,} rows (setup, not part of the experiment)")]


def stage_parse(p: dict) -> list[dict]:
    """Parse + cache when the cache is empty, reload otherwise (the parent empties it before the first)."""
    from rectest.data import load_movielens

    start = time.perf_counter()
    log = load_movielens(RELEASE, Path(p["root"]), cache=True)
    seconds = time.perf_counter() - start
    what = "reload from cache" if p["reload"] else "parse + cache"
    notes = f"{len(log):,} ratings, {log.num_users:,} users x {log.num_items:,} items"
    return [row(what, seconds, notes)]


def make_clock() -> Any:
    """A Lightning callback recording the time of every train / validation batch end and of each epoch start.

    Built on call so that the simulation stages never import Lightning (their peak RSS stays their own).
    """
    import pytorch_lightning as pl

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.start = 0.0
            self.stamps: list[float] = []

        def on_train_epoch_start(self, *args: object) -> None:
            self.start = time.perf_counter()

        def on_validation_epoch_start(self, *args: object) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args: object) -> None:
            self.stamps.append(time.perf_counter())

        def on_validation_batch_end(self, *args: object) -> None:
            self.stamps.append(time.perf_counter())

    return Clock()


def _quiet_lightning() -> None:
    import logging
    import warnings

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _trainer_kwargs(clock, work: Path) -> dict:
    return {
        "callbacks": [clock],
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "default_root_dir": str(work),
        "num_sanity_val_steps": 0,
    }


def stage_train(p: dict) -> list[dict]:
    """A fixed number of training batches of the configured model, extrapolated to one epoch."""
    from rectest.pipeline import training
    from rectest.pipeline.compose import build_spec

    _quiet_lightning()
    cfg = compose_config(Path(p["root"]), p["model"])
    bundle, load_s = load_bundle(cfg)
    todo = training.plan(build_spec(cfg), bundle)
    clock = make_clock()
    trainer = todo.make_trainer(
        max_epochs=1,
        limit_train_batches=p["batches"],
        limit_val_batches=0,
        **_trainer_kwargs(clock, Path(p["work"])),
    )
    start = time.perf_counter()
    trainer.fit(todo.task, datamodule=todo.datamodule)
    fit_s = time.perf_counter() - start
    stamps = clock.stamps
    warm = max(1, min(WARMUP_BATCHES, len(stamps) // 2))  # batches left out of the rate (allocator warm-up)
    per_batch = (stamps[-1] - stamps[warm - 1]) / max(1, len(stamps) - warm)
    rows_train = len(bundle.split.train)
    batch = int(cfg.model.batch_size)
    per_epoch = math.ceil(rows_train / batch)
    setup_s = fit_s - (stamps[-1] - clock.start)  # trainer + loader set-up, paid once per fit
    epoch_s = per_batch * per_epoch
    model = cfg.model
    loss = str(model.task.loss)
    if model.feedback == "implicit":
        loss += f", {model.num_negatives} sampled negatives" if model.num_negatives else ""
        loss += " + in-batch" if model.task.in_batch else ""
        loss += ", other positives excluded" if model.exclude_positives else ""
    notes = (
        f"extrapolated from {len(stamps)} batches ({per_batch * 1e3:.0f} ms/batch x {per_epoch:,} batches of "
        f"{batch}; {rows_train:,} train rows; {loss}); load+split {load_s:.0f} s, fit set-up {setup_s:.1f} s"
    )
    return [row(f"train epoch ({p['model']})", epoch_s, notes, load_s=load_s)]


def stage_evaluate(p: dict) -> list[dict]:
    """Full-ranking validation metrics on the first batches of users, extrapolated to every val user."""
    import numpy as np

    from rectest.data.datamodule import EVAL_USERS_PER_BATCH
    from rectest.pipeline import training
    from rectest.pipeline.compose import build_spec

    _quiet_lightning()
    cfg = compose_config(Path(p["root"]), p["model"])
    bundle, _ = load_bundle(cfg)
    todo = training.plan(build_spec(cfg), bundle)
    clock = make_clock()
    trainer = todo.make_trainer(limit_val_batches=p["batches"], **_trainer_kwargs(clock, Path(p["work"])))
    start = time.perf_counter()
    metrics = trainer.validate(todo.task, datamodule=todo.datamodule, verbose=False)[0]
    total_s = time.perf_counter() - start
    batches_s = clock.stamps[-1] - clock.start
    per_batch = batches_s / len(clock.stamps)
    users = int(np.unique(bundle.split.val.user).size)
    batches = math.ceil(users / EVAL_USERS_PER_BATCH)
    setup_s = total_s - batches_s  # target / exclusion index of the whole split, built once per pass
    seconds = setup_s + per_batch * batches
    k = int(cfg.model.task.k)
    shown = ", ".join(f"{name.split('/')[-1]} {v:.4f}" for name, v in metrics.items())
    notes = (
        f"extrapolated: set-up {setup_s:.1f} s + {per_batch:.2f} s/batch x {batches} batches of "
        f"{EVAL_USERS_PER_BATCH} users ({users:,} val users, {len(clock.stamps)} timed; untrained model: {shown}; K={k})"
    )
    return [row("evaluation (one validation pass)", seconds, notes)]


def stage_export(p: dict) -> list[dict]:
    """Unit-norm user and item vectors of the configured (untrained) model, written and read back."""
    from rectest.data import load_movielens
    from rectest.models.export import export_embeddings, load_exported
    from rectest.pipeline.compose import build_spec

    cfg = compose_config(Path(p["root"]), p["model"])
    log = load_movielens(RELEASE, Path(p["root"]))
    net = build_spec(cfg).model.net(num_users=log.num_users, num_items=log.num_items)
    work = Path(p["work"])
    start = time.perf_counter()
    paths = export_embeddings(net, log, work)
    emb = load_exported(work)
    seconds = time.perf_counter() - start
    size = sum(path.stat().st_size for path in paths.values()) / 2**20
    notes = f"{tuple(emb.user_vectors.shape)} users + {tuple(emb.item_vectors.shape)} items, {size:.0f} MiB npz, write + read"
    return [row("export embeddings", seconds, notes)]


def _state(m: int, n: int, d: int) -> Any:
    import torch

    from rectest.sim import State, random_sphere

    g = torch.Generator().manual_seed(0)
    return State(random_sphere(1, m, d, g), random_sphere(1, n, d, g))


def _fastest_step(sim, repeats: int) -> float:
    """Fastest of ``repeats`` unlogged steps after one warm-up step (the least disturbed by other jobs)."""
    sim.step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sim.step()
        times.append(time.perf_counter() - start)
    return min(times)


def _logged_step(sim) -> float:
    start = time.perf_counter()
    sim.step(log=True)
    return time.perf_counter() - start


def stage_step(p: dict) -> list[dict]:
    """One replica: the fastest unlogged step and one logged step (all measures) of one policy."""
    from rectest.sim import Dynamics, Policy, Simulation

    m, n, d = p["m"], p["n"], p["d"]
    k = p.get("k")
    policy = Policy(beta=p["beta"], k=k)
    sim = Simulation(_state(m, n, d), policy, Dynamics(), seeds=[0], log_every=10**9, chunk_size=p["chunk"])
    name = "softmax" if k is None else f"top-k k={k}"
    shape = f"m={m:,} x n={n:,}, d={d}, 1 replica"
    step_s = _fastest_step(sim, p["repeats"])
    rows = [
        row(
            f"sim step, {name}",
            step_s,
            f"{shape}; fastest of {p['repeats']} after a warm-up",
            key=f"{name} {n}",
        )
    ]
    logged_s = _logged_step(sim)
    rows.append(
        row(f"sim logged step, {name}", logged_s, f"{shape}; all 7 measures", key=f"{name} {n} logged")
    )
    return rows


def stage_grid(p: dict) -> list[dict]:
    """The experiment's k grid as one batched simulation, one seed per k (the run has more seeds)."""
    import dataclasses

    from rectest.pipeline.compose import build_spec
    from rectest.pipeline.sweep import expand
    from rectest.sim import Simulation

    spec = build_spec(compose_config(Path(p["root"])))
    spec.sim.seeds = spec.sim.seeds[: p["seeds"]]
    m, n, d = p["m"], p["n"], p["d"]
    sweep = expand(dataclasses.replace(spec), n, d)
    replicas = sweep.replicas
    sim = Simulation(
        _state(m, n, d),
        sweep.policy,
        sweep.dynamics,
        sweep.seeds,
        log_every=10**9,
        chunk_size=spec.sim.chunk_size,
    )
    ks = sorted({r.params["k"] for r in replicas})
    shape = f"m={m:,} x n={n:,}, k in {ks}, {len(replicas)} replicas"
    step_s = _fastest_step(sim, 1)
    logged_s = _logged_step(sim)
    return [
        row(
            "sim step, k grid batched",
            step_s,
            f"{shape}; after a warm-up",
            key="grid",
            replicas=len(replicas),
        ),
        row("sim logged step, k grid", logged_s, f"{shape}; all 7 measures", key="grid logged"),
    ]


STAGES = {
    "generate": stage_generate,
    "parse": stage_parse,
    "train": stage_train,
    "evaluate": stage_evaluate,
    "export": stage_export,
    "step": stage_step,
    "grid": stage_grid,
}


# ------------------------------------------------------------------------------------------------ parent
def run_child(stage: str, params: dict, cache: Path) -> list[dict]:
    """Run one stage in a fresh interpreter; a failure becomes a row that says why."""
    env = {**os.environ, CACHE_ENV: str(cache), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, __file__, "--stage", stage, "--params", json.dumps(params)]
    print(
        f"  running {stage} {json.dumps({k: v for k, v in params.items() if k not in ('root', 'work')})}",
        flush=True,
    )
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [{"stage": stage, "seconds": float("nan"), "peak_gib": float("nan"), "notes": "timed out"}]
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return [
            {"stage": stage, "seconds": float("nan"), "peak_gib": float("nan"), "notes": f"FAILED: {tail}"}
        ]
    return json.loads(done.stdout.strip().splitlines()[-1])


def data_root(rows: int, quick: bool) -> tuple[Path, bool]:
    """The folder holding ``ml-20m/ratings.csv`` with ``rows`` rows, and whether it must be generated."""
    for root in (SHARED_ROOT, BENCH / ("ml20m-quick" if quick else "ml20m")):
        marker = root / RELEASE / "ROWS"
        if marker.is_file() and marker.read_text() == str(rows):
            return root, False
    return BENCH / ("ml20m-quick" if quick else "ml20m"), True


def logged_steps(steps: int, log_every: int) -> int:
    """Steps the engine logs in a run of ``steps``: every ``log_every``-th from 0, and the last one."""
    logged = len(range(0, steps, log_every))
    return logged + (0 if (steps - 1) % log_every == 0 else 1)


def projection(found: dict[str, dict], plan: dict) -> list[tuple[str, float, str]]:
    """Projected seconds of each part of the full experiment from the measured rows."""
    epochs, steps, log_every = plan["epochs"], plan["steps"], plan["log_every"]
    scale = plan["seeds"] / plan["grid_seeds"]
    train = found["train epoch (two_tower)"]["seconds"]
    evaluation = found["evaluation (one validation pass)"]["seconds"]
    logged = logged_steps(steps, log_every)
    grid, grid_logged = found["grid"]["seconds"], found["grid logged"]["seconds"]
    sim = scale * (logged * grid_logged + (steps - logged) * grid)
    replicas = round(found["grid"]["replicas"] * scale)
    split = max(0.0, found["train epoch (two_tower)"]["load_s"] - found["reload from cache"]["seconds"])
    parts = [
        (
            "data",
            found["parse + cache"]["seconds"] + split,
            f"parse + cache (once; later runs reload it) + split {split:.0f} s",
        ),
        (
            "training",
            epochs * (train + evaluation) + evaluation,
            f"{epochs} epochs x (train epoch + validation) + test (early stopping decides; cap "
            f"trainer.max_epochs={plan['max_epochs']}: {plan['max_epochs'] * (train + evaluation) + evaluation:,.0f} s)",
        ),
        ("export", found["export embeddings"]["seconds"], ""),
        (
            "simulation",
            sim,
            f"T={steps} steps ({logged} logged, log_every={log_every}) x {replicas} replicas "
            f"({len(plan['k'])} k x {plan['seeds']} seeds; measured with {plan['grid_seeds']} seed, scaled linearly)",
        ),
    ]
    return parts


def memory_estimate(found: dict[str, dict], plan: dict, m: int, n: int, d: int) -> str:
    """Peak RSS of the full replica count, estimated from the measured grid (the state grows linearly)."""
    measured = found["grid"]["replicas"]
    full = round(measured * plan["seeds"] / plan["grid_seeds"])
    per_replica = (STATE_COPIES * (m + n) * d * 4 + m * (4 + 8)) / 2**30  # vectors; uniforms + choices
    peak = found["grid"]["peak_gib"] + (full - measured) * per_replica
    return (
        f"estimated peak RSS of the {full}-replica run: {peak:.2f} GiB (measured {measured}-replica peak "
        f"{found['grid']['peak_gib']:.2f} GiB + {full - measured} x {per_replica * 2**10:.0f} MiB: {STATE_COPIES} "
        f"copies of the float32 (m+n) x d state, uniforms and choices; chunk temporaries do not grow with R)"
    )


def all_movies_estimate(found: dict[str, dict], plan: dict, n: int) -> str:
    """The grid simulation with every movie a creator, scaled by the single-replica step ratios."""
    wide = [
        found[f"{name} {ITEMS}"]["seconds"] / found[f"{name} {n}"]["seconds"]
        for name in ("softmax", f"top-k k={TOPK_K}")
    ]
    logged = found[f"softmax {ITEMS} logged"]["seconds"] / found[f"softmax {n} logged"]["seconds"]
    steps, log_every = plan["steps"], plan["log_every"]
    scale = plan["seeds"] / plan["grid_seeds"]
    n_logged = logged_steps(steps, log_every)
    step_ratio = sum(wide) / len(wide)
    sim = scale * (
        n_logged * found["grid logged"]["seconds"] * logged
        + (steps - n_logged) * found["grid"]["seconds"] * step_ratio
    )
    return (
        f"simulation with all {ITEMS:,} movies as creators: ~{sim:,.0f} s ({sim / 3600:.1f} h), the {n:,}-creator "
        f"grid scaled by the measured single-replica ratios (step: softmax {wide[0]:.1f}x, top-k {wide[1]:.1f}x, "
        f"mean {step_ratio:.1f}x; logged step {logged:.1f}x)"
    )


def print_table(rows: list[dict], parts: list[tuple[str, float, str]], header: str) -> None:
    print(f"\n{header}\n")
    print("| stage | seconds | peak RSS GiB | notes |")
    print("|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['seconds']:,.2f} | {r['peak_gib']:.2f} | {r['notes']} |")
    total = sum(s for _, s, _ in parts)
    for name, seconds, notes in parts:
        print(f"| projected: {name} | {seconds:,.0f} | | {notes} |")
    if parts:
        print(f"| **projected: full experiment on this CPU** | **{total:,.0f}** ({total / 3600:.1f} h) | | |")
    worst = max((r["peak_gib"] for r in rows if r["peak_gib"] == r["peak_gib"]), default=float("nan"))
    print(f"\nlargest peak RSS of any stage: {worst:.2f} GiB (limit 24 GB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (under ~2 minutes)")
    parser.add_argument(
        "--all-movies", action="store_true", help="also time steps with all 26,744 movies as creators"
    )
    parser.add_argument("--log-every", type=int, default=10, help="logged-step interval of the projected run")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the projected run")
    parser.add_argument(
        "--no-mf", action="store_true", help="skip the MF epochs (model=mf and model=mf_fast)"
    )
    parser.add_argument(
        "--training-only", action="store_true", help="stop after loading and the training epochs"
    )
    parser.add_argument("--stage", choices=tuple(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](json.loads(args.params))))
        return
    if args.log_every < 1 or args.epochs < 0:
        parser.error(f"--log-every={args.log_every}, --epochs={args.epochs}: expected >= 1 and >= 0")
    sizes = QUICK if args.quick else FULL
    root, fresh = data_root(sizes.rows, args.quick)
    work = BENCH / ("ml20m-quick" if args.quick else "ml20m") / "work"
    cache = work / "cache"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = compose_config(root)
    import torch

    d, n = int(cfg.model.dim), int(cfg.sim.n_creators)
    plan = {
        "epochs": args.epochs,
        "max_epochs": int(cfg.trainer.max_epochs),
        "steps": int(cfg.sim.steps),
        "seeds": len(cfg.sim.seeds),
        "grid_seeds": 1,
        "k": list(cfg.policy.k),
        "log_every": args.log_every,
    }
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    print(
        f"# {sizes} -> {root / RELEASE}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    base = {"root": str(root), "work": str(work)}
    rows: list[dict] = []
    if fresh:
        rows += run_child("generate", {**base, "rows": sizes.rows}, cache)
    rows += run_child("parse", {**base, "reload": False}, cache)
    rows += run_child("parse", {**base, "reload": True}, cache)
    for model in ("two_tower",) if args.no_mf else ("two_tower", "mf", "mf_fast"):
        rows += run_child("train", {**base, "model": model, "batches": sizes.train_batches}, cache)
    if args.training_only:
        print_table(rows, [], f"## {RELEASE}-shaped log, {sizes.rows:,} ratings: loading and training only")
        shutil.rmtree(work, ignore_errors=True)
        return
    rows += run_child("evaluate", {**base, "model": "two_tower", "batches": sizes.eval_batches}, cache)
    rows += run_child("export", {**base, "model": "two_tower"}, cache)
    sim = {
        **base,
        "m": sizes.sim_users,
        "d": d,
        "beta": 1.0,
        "repeats": sizes.repeats,
        "chunk": int(cfg.sim.chunk_size),
    }
    widths = (n, ITEMS) if args.all_movies else (n,)
    for width in widths:
        for k in (None, TOPK_K):
            rows += run_child("step", {**sim, "n": width, "k": k}, cache)
    rows += run_child("grid", {**sim, "n": n, "seeds": plan["grid_seeds"]}, cache)
    found = {r.get("key", r["stage"]): r for r in rows}
    try:
        parts = projection(found, plan)
    except KeyError as missing:
        parts = [("(not available)", float("nan"), f"stage {missing} did not report")]
    load_end = os.getloadavg()
    header = (
        f"## {RELEASE}-shaped log, {sizes.rows:,} ratings ({'QUICK smoke sizes, not the real scale' if args.quick else 'full scale'}); "
        f"+experiment={EXPERIMENT}; {torch.get_num_threads()} CPU threads; load average {load_start[0]:.1f} at start, "
        f"{load_end[0]:.1f} at end (shared machine: times are noisy); benchmark wall time {time.perf_counter() - t0:,.0f} s"
    )
    print_table(rows, parts, header)
    estimates = [lambda: memory_estimate(found, plan, sizes.sim_users, n, d)]
    if args.all_movies:
        estimates.append(lambda: all_movies_estimate(found, plan, n))
    for estimate in estimates:
        try:
            print(estimate())
        except KeyError as missing:
            print(f"(an estimate is missing: stage {missing} did not report)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
