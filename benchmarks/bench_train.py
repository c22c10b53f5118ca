"""MF training throughput (ratings per second per epoch) and accuracy, side by side with Surprise's SVD.

Prints two tables:

1. MovieLens-100K, predefined folds (default u1): rectest MF with the shipped ``conf/model/mf.yaml`` (train on
   95% of ``uX.base``, 5% for early stopping), the throughput setting ``conf/model/mf_fast.yaml`` (large
   batches, compiled step, fused Adam) and the same without compiling or fusing, against Surprise SVD with
   its defaults (100 factors, 20 epochs, trained on all of ``uX.base``). Two rates: training rows / the
   median epoch's wall time, and rows x epochs / the whole training time (validation excluded; it includes
   the first epoch, where a compiled model compiles); Surprise has one: rows x epochs / fit time.
2. A synthetic 20M-rating log (138,493 users x 26,744 items, like ML-20M): one epoch of rectest MF on CPU
   at a few batch sizes: dense tables with Adam, sparse tables with SparseAdam, and ``model=mf_fast``
   (one epoch: its rate includes compiling).

Surprise is not a dependency: it is pip-installed into the running interpreter when missing (pass
--no-surprise to skip it).

Usage:
    .venv/bin/python benchmarks/bench_train.py [--folds u1 u2 ...] [--synthetic-rows 20000000] [--no-surprise]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402, F401
from hydra.utils import instantiate  # noqa: E402

import rectest.pipeline.compose  # noqa: E402, F401
from rectest.data.datamodule import InteractionDataModule  # noqa: E402
from rectest.data.interactions import Interactions, Split  # noqa: E402
from rectest.data.movielens import load_ml100k_fold  # noqa: E402
from rectest.models.fit import fit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECTEST_SHARED_DATA", REPO.parent / "shared" / "data" / "movielens"))
VAL_FRACTION = 0.05


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (validation excluded)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: object) -> None:
        self._last = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.times.append(self._last - self._start)


def make_trainer(timer: EpochTimer, max_epochs: int, **kwargs: object) -> pl.Trainer:
    callbacks = [*kwargs.pop("callbacks", []), timer]
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        deterministic=True,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kwargs,
    )


EAGER = ("model.batch_size=32768", "model.task.lr=0.03", "model.task.lr_decay=0.9")  # mf_fast, not compiled
SPARSE = ("model.net.sparse=true", "model.task.optimizer=sparse_adam")


def rectest_mf(
    split: Split, run_dir: Path, overrides: tuple[str, ...] = (), max_epochs: int = 50, option: str = "mf"
) -> dict:
    """Train a shipped MF config (with Hydra overrides) on a split; return throughput and test RMSE."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={option}", *overrides])
    pl.seed_everything(0, verbose=False)
    train = split.train
    net = instantiate(cfg.model.net, num_users=train.num_users, num_items=train.num_items)
    task = instantiate(cfg.model.task)(net=net)
    bs = int(cfg.model.batch_size)
    dm = InteractionDataModule(split, "explicit", bs, 0, 0)
    timer = EpochTimer()
    t0 = time.perf_counter()
    metrics = fit(
        task, dm, functools.partial(make_trainer, timer, max_epochs), run_dir, int(cfg.model.patience)
    )
    total = time.perf_counter() - t0
    train_time = sum(timer.times)
    return {
        "rows": len(train),
        "epochs": len(timer.times),
        "batch": bs,
        "rate": len(train) / float(np.median(timer.times)),
        "fit_rate": len(train) * len(timer.times) / train_time,
        "train_s": train_time,
        "total_s": total,
        "rmse": metrics.get("test/rmse", float("nan")),
    }


def ensure_surprise() -> object | None:
    try:
        return importlib.import_module("surprise")
    except ImportError:
        print("installing scikit-surprise into this interpreter (benchmark-only dependency) ...", flush=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "scikit-surprise"], check=False)
        if done.returncode != 0:
            print("scikit-surprise failed to install/build; its column is left out")
            return None
        return importlib.import_module("surprise")


def surprise_svd(surprise: object, fold: str) -> dict:
    """Surprise SVD (defaults) trained on all of uX.base, tested on uX.test."""
    folder = SHARED / "ml-100k"
    reader = surprise.Reader("ml-100k")
    data = surprise.Dataset.load_from_folds(
        [(str(folder / f"{fold}.base"), str(folder / f"{fold}.test"))], reader
    )
    trainset, testset = next(surprise.model_selection.PredefinedKFold().split(data))
    algo = surprise.SVD(random_state=0)
    t0 = time.perf_counter()
    algo.fit(trainset)
    train_time = time.perf_counter() - t0
    rmse = surprise.accuracy.rmse(algo.test(testset), verbose=False)
    epochs = algo.n_epochs
    return {
        "rows": trainset.n_ratings,
        "epochs": epochs,
        "batch": 1,
        "rate": trainset.n_ratings * epochs / train_time,
        "fit_rate": trainset.n_ratings * epochs / train_time,
        "train_s": train_time,
        "total_s": train_time,
        "rmse": rmse,
    }


def synthetic_log(rows: int, seed: int = 0) -> Split:
    """ML-20M-sized random log: Zipf-like item popularity, ratings from a rank-8 model rounded to half stars."""
    m, n, d = 138_493, 26_744, 8
    gen = torch.Generator().manual_seed(seed)
    user = torch.randint(m, (rows,), generator=gen)
    popularity = 1.0 / torch.arange(1, n + 1, dtype=torch.float64) ** 0.8  # (n,)
    cdf = torch.cumsum(popularity / popularity.sum(), 0)
    item = torch.searchsorted(cdf, torch.rand(rows, generator=gen, dtype=torch.float64)).clamp_max(n - 1)
    u, v = torch.randn(m, d, generator=gen) / d**0.5, torch.randn(n, d, generator=gen)
    rating = (3.5 + (u[user] * v[item]).sum(-1) + 0.5 * torch.randn(rows, generator=gen)).clamp(0.5, 5.0)
    rating = (rating * 2).round() / 2
    log = Interactions(
        user.numpy(),
        item.numpy(),
        rating.float().numpy(),
        None,
        np.arange(m),
        np.arange(n),
        name="synthetic-20M",
    )
    empty = log.take(np.zeros(0, dtype=np.int64))
    return Split(train=log, val=empty, test=empty)


def row(name: str, r: dict) -> str:
    return (
        f"| {name} | {r['rows']:,} | {r['batch']} | {r['epochs']} | {r['rate']:,.0f} | {r['fit_rate']:,.0f} | "
        f"{r['train_s']:.1f} | "
        f"{r['total_s']:.1f} | {r['rmse']:.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", nargs="+", default=["u1"])
    parser.add_argument("--synthetic-rows", type=int, default=20_000_000)
    parser.add_argument("--synthetic-batches", type=int, nargs="+", default=[16_384, 65_536])
    parser.add_argument("--no-surprise", action="store_true")
    parser.add_argument("--out", default="/tmp/rectest-bench-train")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 suits these small models)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    out = Path(args.out)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    header = (
        "| model | train rows | batch | epochs | ratings/s per epoch (median) | ratings/s over the fit | train s "
        "| total s | test RMSE |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    surprise = None if args.no_surprise else ensure_surprise()
    if (SHARED / "ml-100k" / "u1.base").exists():
        print("\n## MovieLens-100K predefined folds (same machine, same run)\n")
        print(header)
        for fold in args.folds:
            split = load_ml100k_fold(fold, SHARED, val_fraction=VAL_FRACTION, cache=False)
            print(row(f"`model=mf` ({fold})", rectest_mf(split, out / fold)), flush=True)
            eager = rectest_mf(split, out / f"{fold}-eager", EAGER)
            print(row(f"`model=mf {' '.join(EAGER)}` ({fold})", eager), flush=True)
            fast = rectest_mf(split, out / f"{fold}-fast", option="mf_fast")
            print(row(f"`model=mf_fast` ({fold})", fast), flush=True)
            if surprise is not None:
                print(row(f"Surprise SVD ({fold})", surprise_svd(surprise, fold)), flush=True)
    else:
        print(f"(ml-100k not found under {SHARED}; set RECTEST_SHARED_DATA)")
    if args.synthetic_rows > 0:
        print(
            f"\n## Synthetic {args.synthetic_rows:,}-rating log, one epoch (138,493 users x 26,744 items)\n"
        )
        print(header)
        split = synthetic_log(args.synthetic_rows)
        variants = (
            ("`model=mf` (dense, Adam)", "mf", ()),
            ("`model=mf` sparse, SparseAdam", "mf", SPARSE),
            ("`model=mf_fast` (dense, compiled, fused Adam)", "mf_fast", ()),
        )
        for bs in args.synthetic_batches:
            for name, option, extra in variants:
                over = (f"model.batch_size={bs}", *extra)
                result = rectest_mf(split, out / f"synthetic-{bs}", over, max_epochs=1, option=option)
                print(row(name, result), flush=True)


if __name__ == "__main__":
    main()
