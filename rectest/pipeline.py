"""The whole testbed as one plain function: data -> train -> export -> simulate -> report.

This is the only module that reads the Hydra config. Every other package takes plain arguments.

Story of :func:`run`:
  1. claim the run folder (new, or resume an interrupted run of the same config);
  2. load the data option;
  3. train the recommender and export unit-norm embeddings (skipped for bring-your-own embeddings and
     on resume, where the exported embeddings are read back);
  4. choose creators (the n most-rated items) and users (all, or a sample of m), build the initial state;
  5. expand the sweep into replicas, validate every value, report the theorem's conditions;
  6. run the batched simulation with logging, checkpoints and periodic retraining;
  7. write summary.json, table.md, figures and TensorBoard summaries.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rectest import simulate, training
from rectest.config import build
from rectest.data.interactions import most_rated
from rectest.errors import ConfigError, DataError
from rectest.report.geometry import geometry_console
from rectest.report.summary import write_summary
from rectest.rundir import RunFolder
from rectest.sim.geometry import iid_reference, start_geometry, top_overlap, transform_start
from rectest.sweep import Replica, expand, sweep_keys, swept_values
from rectest.validate import theorem_conditions, validate_choices, validate_values

log = logging.getLogger("rectest")


@dataclass
class Start:
    """The simulation's starting point.

    Attributes:
        users: (m, d) unit-norm true user vectors.
        creators: (n, d) unit-norm true creator vectors.
        model_users: (m, d') the recommender's unit-norm user vectors (None without a trained model).
        model_creators: (n, d') the recommender's unit-norm creator vectors.
        user_ids: (m,) original ids of the simulated users.
        creator_ids: (n,) original ids of the simulated creators.
        train_metrics: the recommender's test metrics (empty without training).
    """

    users: np.ndarray
    creators: np.ndarray
    model_users: np.ndarray | None
    model_creators: np.ndarray | None
    user_ids: np.ndarray
    creator_ids: np.ndarray
    train_metrics: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("sim.device=cuda: CUDA is not available on this machine (use auto or cpu)")
    return torch.device(name)


def _hydra_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def run(cfg: DictConfig, run_dir: Path | None = None) -> Path:
    """Run the configured pipeline and return its run folder.

    Args:
        cfg: the composed config (``conf/config.yaml`` plus overrides).
        run_dir: where to write; defaults to Hydra's run folder.

    Raises:
        RectestError: bad input (a message naming the file or value and what was expected).
    """
    sim_cfg = cfg.sim
    validate_choices(
        cfg.dynamics.f,
        cfg.dynamics.g,
        sim_cfg.init,
        sim_cfg.recommender,
        sim_cfg.device,
        sim_cfg.dtype,
        sim_cfg.creators,
        sim_cfg.transform,
    )
    device = resolve_device(sim_cfg.device)
    clock = time.perf_counter()
    bundle = _load_data(cfg)  # 2. (before the folder is claimed: bad input leaves nothing behind)
    timings = {"load_s": time.perf_counter() - clock}
    n, d = _planned_sizes(cfg, bundle)
    values = swept_values(cfg, n)  # 5. (checked before any work starts)
    validate_values(values, n, d)
    replicas = expand(values, list(sim_cfg.seeds))
    keys = sweep_keys(values)
    _set_threads(
        sim_cfg.threads, len(replicas) * n * (bundle.interactions.num_users if bundle.interactions else 1)
    )
    todo = (
        training.plan(cfg, bundle, progress_mode(bool(cfg.logger.progress))) if _trains(cfg, bundle) else None
    )
    folder = RunFolder(Path(run_dir) if run_dir is not None else _hydra_run_dir())
    try:
        resume = folder.claim(cfg)  # 1.
        clock = time.perf_counter()
        start = _prepare_start(cfg, bundle, todo, folder, resume)  # 3. + 4.
        timings["train_s"] = time.perf_counter() - clock
        _report_theorem(replicas, n)
        settings = simulate.Settings(
            steps=int(sim_cfg.steps),
            log_every=int(sim_cfg.log_every),
            checkpoint_every=int(sim_cfg.checkpoint_every),
            chunk_size=int(sim_cfg.chunk_size),
            r_polarized=float(sim_cfg.r_polarized),
            dtype=torch.float64 if sim_cfg.dtype == "float64" else torch.float32,
            device=device,
            f=cfg.dynamics.f,
            g=cfg.dynamics.g,
            tanh_slope=float(cfg.dynamics.tanh_slope),
            learned=sim_cfg.recommender == "learned",
            window=int(sim_cfg.window),
            feedback_noise=float(sim_cfg.feedback_noise),
            warm_start_epochs=int(sim_cfg.warm_start_epochs),
            tensorboard=bool(cfg.logger.tensorboard),
            projector=bool(cfg.logger.projector),
            figures=bool(cfg.logger.figures),
            progress=progress_mode(bool(cfg.logger.progress)),
            title=_title(bundle, cfg, keys),
            setting=_paper_setting(bundle.name, str(sim_cfg.init)),
        )
        geometry = _start_geometry(start, sim_cfg)
        print(geometry_console(geometry))
        extra = {
            "theorem": [theorem_conditions(r.params, n) for r in replicas],
            "training": start.train_metrics,
            "geometry": geometry,
        }
        if settings.steps == 0:  # train and export only: the recommender, its geometry, no simulation
            write_summary({**extra, "timings": timings, "horizon": 0}, folder.summary)
            print(f"run folder: {folder.root} (sim.steps=0: trained and exported, nothing simulated)")
        else:
            simulate.simulate(start, replicas, keys, settings, folder, resume, extra, timings)  # 6. + 7.
    finally:
        folder.release()
    return folder.root


def progress_mode(enabled: bool) -> str:
    """``bar`` (live bars) when stderr is a terminal, ``lines`` (a plain line now and then) when it is a
    file or a pipe, ``off`` when ``logger.progress=false``."""
    if not enabled:
        return "off"
    return "bar" if sys.stderr.isatty() else "lines"


SMALL_PROBLEM = 1 << 22  # replicas x users x creators below which one CPU thread is fastest


def _set_threads(threads, size: int) -> None:
    """Pin torch's CPU threads: the configured number, or 1 for small problems.

    For small tensors, synchronising threads costs more than the work itself (on a busy 2-core machine a
    100-user simulation ran 100x slower with 2 threads than with 1).
    """
    if threads is not None:
        if int(threads) < 1:
            raise ConfigError(f"sim.threads={threads}: expected a positive number of threads (or null)")
        torch.set_num_threads(int(threads))
    elif size < SMALL_PROBLEM:
        torch.set_num_threads(1)


def _paper_setting(data: str, init: str) -> str | None:
    """Which of the paper's tables is comparable with this run: its i.i.d. synthetic world only when the run
    starts from it (``sim.init=truth``), its MovieLens table for MovieLens data; None otherwise."""
    if data == "synthetic":
        return "synthetic" if init == "truth" else None
    return data if data.startswith("ml-") else None


def _title(bundle, cfg: DictConfig, keys: list[str]) -> str:
    swept = f", {', '.join(keys)} swept" if keys else ""
    return f"{bundle.name}: {cfg.policy.name} policy{swept}"


def _load_data(cfg: DictConfig):
    return build(cfg.data, "data")


def _report_theorem(replicas: list[Replica], n: int) -> None:
    """Log, per swept setting, whether the polarization theorem's conditions hold (reported, not enforced)."""
    verdicts: dict[str, bool] = {}
    for rep in replicas:
        label = ", ".join(f"{k}={v}" for k, v in rep.params.items() if v is not None)
        verdicts[label] = theorem_conditions(rep.params, n)["theorem_applies"]
    held = [label for label, ok in verdicts.items() if ok]
    log.info(
        "polarization theorem (every p_ij > p0 > 0 and 0 < eta_u < eta_c/2 < 1/4; reported, not required): "
        "its conditions hold for %d of %d settings%s",
        len(held),
        len(verdicts),
        f" ({'; '.join(held)}): these polarize from any start, the others may or may not"
        if held
        else ": a run may still polarize without them",
    )


def _planned_sizes(cfg: DictConfig, bundle) -> tuple[int, int]:
    """(n creators, d dimensions) of the simulation, known before any training."""
    if bundle.embeddings is not None:
        if cfg.sim.recommender == "learned":
            raise ConfigError(
                "sim.recommender=learned needs a trained model; data=embeddings supports oracle only"
            )
        if cfg.sim.init == "truth":
            raise ConfigError("sim.init=truth needs data=synthetic (a world with true vectors)")
        users, creators = bundle.embeddings
        n_all, d = creators.shape[0], creators.shape[1]
    else:
        n_all = bundle.interactions.num_items
        if cfg.sim.init == "truth":
            if bundle.world is None:
                raise ConfigError(
                    f"sim.init=truth needs data=synthetic; data={bundle.name} has no true vectors"
                )
            d = bundle.world.creators.shape[1]
        elif _earlier_run(str(cfg.sim.init)) is not None:
            d = training.exported_dim(_earlier_run(str(cfg.sim.init)))
        else:
            d = int(cfg.model.dim)
            if d < 1:
                raise ConfigError(f"model.dim={cfg.model.dim}: expected a positive embedding dimension")
    n_creators = cfg.sim.n_creators
    if n_creators is not None and int(n_creators) < 1:
        raise ConfigError(f"sim.n_creators={n_creators}: expected at least 1 (or null for all)")
    if cfg.sim.n_users is not None and int(cfg.sim.n_users) < 1:
        raise ConfigError(f"sim.n_users={cfg.sim.n_users}: expected at least 1 (or null for all)")
    if int(cfg.sim.steps) < 0 or int(cfg.sim.log_every) < 1 or int(cfg.sim.checkpoint_every) < 0:
        raise ConfigError(
            f"sim.steps={cfg.sim.steps}, sim.log_every={cfg.sim.log_every}, "
            f"sim.checkpoint_every={cfg.sim.checkpoint_every}: expected steps >= 0 (0: train and export "
            "only), log_every >= 1, checkpoint_every >= 0"
        )
    every = n_creators is None or cfg.sim.creators == "all"  # sim.creators=all ignores the count
    return (n_all if every else min(int(n_creators), n_all)), d


RUN_PREFIX = "run:"


def _earlier_run(init: str) -> Path | None:
    """The folder of ``sim.init=run:PATH`` (None for the other choices)."""
    return Path(init[len(RUN_PREFIX) :]) if init.startswith(RUN_PREFIX) else None


def _trains(cfg: DictConfig, bundle) -> bool:
    """Whether this run trains a recommender: not for bring-your-own embeddings, not when it starts from
    an earlier run's export (``sim.init=run:PATH``), not for ``sim.init=truth`` with the oracle (nothing
    would use the model)."""
    if bundle.embeddings is not None or _earlier_run(str(cfg.sim.init)) is not None:
        return False
    return not (cfg.sim.init == "truth" and cfg.sim.recommender == "oracle")


def _prepare_start(cfg: DictConfig, bundle, todo, folder: RunFolder, resume: bool) -> Start:
    """Train (or reload) the recommender and pick the simulated users and creators."""
    if bundle.embeddings is not None:
        users, creators = bundle.embeddings
        creator_idx = _choose_creators(
            cfg.sim.creators, None, creators.shape[0], cfg.sim.n_creators, int(cfg.seed)
        )
        m = users.shape[0] if cfg.sim.n_users is None else min(int(cfg.sim.n_users), users.shape[0])
        users, creators = _transform(_unit(users[:m]), _unit(creators[creator_idx]), cfg.sim.transform)
        return Start(users, creators, None, None, np.arange(m), creator_idx)

    inter = bundle.interactions
    earlier = _earlier_run(str(cfg.sim.init))
    if earlier is not None:  # simulate only, from an earlier run's exported embeddings
        user_vecs, item_vecs, metrics = training.load_export_for(earlier, inter)
    elif todo is None:  # sim.init=truth with the oracle: the world's vectors, no model to train
        user_vecs, item_vecs, metrics = bundle.world.users, bundle.world.creators, {}
    elif resume and training.has_export(folder.root):
        user_vecs, item_vecs, metrics = training.load_export(folder.root)
    else:
        user_vecs, item_vecs, metrics = training.train_and_export(todo, bundle, folder.root)
    creator_idx = _choose_creators(
        cfg.sim.creators, inter, inter.num_items, cfg.sim.n_creators, int(cfg.seed)
    )
    user_idx = _sample_users(inter.num_users, cfg.sim.n_users, int(cfg.seed))
    model_users, model_creators = user_vecs[user_idx], item_vecs[creator_idx]
    if cfg.sim.init == "truth":
        users, creators = bundle.world.users[user_idx], bundle.world.creators[creator_idx]
    else:
        users, creators = model_users, model_creators
    users, creators = _transform(_unit(users), _unit(creators), cfg.sim.transform)
    return Start(
        users=users,
        creators=creators,
        model_users=_unit(model_users),
        model_creators=_unit(model_creators),
        user_ids=inter.user_ids[user_idx],
        creator_ids=inter.item_ids[creator_idx],
        train_metrics=metrics,
    )


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norms == 0):
        raise DataError("exported embeddings contain a zero or non-finite vector; the model did not train")
    return (x / norms).astype(np.float32)


def _choose_creators(kind: str, ratings, num_items: int, n_creators, seed: int) -> np.ndarray:
    """Indices of the items that become creators.

    ``most_rated``: the n most-rated items (ties broken by index), in descending count order (without
    rating counts, as for bring-your-own embeddings, the first n rows); ``random``: n items drawn without
    replacement (seeded by ``seed``), in index order; ``all``: every item (``sim.n_creators`` ignored).
    """
    n = num_items if n_creators is None or kind == "all" else min(int(n_creators), num_items)
    if kind == "all" or n == num_items and kind == "random":
        return np.arange(num_items)
    if kind == "random":
        return np.sort(np.random.default_rng(seed).choice(num_items, size=n, replace=False))
    if ratings is None:  # bring-your-own embeddings: no rating counts
        return np.arange(n)
    return most_rated(ratings, n)


def _transform(users: np.ndarray, creators: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``sim.transform`` applied to the starting vectors (see :func:`rectest.sim.geometry.transform_start`)."""
    try:
        u, c = transform_start(torch.from_numpy(users), torch.from_numpy(creators), kind)
    except ValueError as err:
        raise ConfigError(f"sim.{err}") from None
    return u.numpy(), c.numpy()


def _start_geometry(start: Start, sim_cfg) -> dict:
    """The ``geometry`` block of summary.json: the starting state next to i.i.d. uniform vectors."""
    users, creators = torch.from_numpy(start.users), torch.from_numpy(start.creators)
    (m, d), n = users.shape, creators.shape[0]
    geometry = {
        "transform": str(sim_cfg.transform),
        "creators": str(sim_cfg.creators),
        "m": m,
        "n": n,
        "d": d,
        "start": start_geometry(users, creators),
        "iid": iid_reference(m, n, d),
    }
    if sim_cfg.transform != "none" and start.model_users is not None:
        geometry["model_top10_kept"] = top_overlap(
            torch.from_numpy(start.model_users), torch.from_numpy(start.model_creators), users, creators
        )
    return geometry


def _sample_users(num_users: int, n_users, seed: int) -> np.ndarray:
    if n_users is None or int(n_users) >= num_users:
        return np.arange(num_users)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_users, size=int(n_users), replace=False))


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (for logs and hparams)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
