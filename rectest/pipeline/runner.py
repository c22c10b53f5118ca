"""The whole testbed as one typed function: data -> train -> export -> simulate -> report.

:func:`run` takes a :class:`~rectest.pipeline.spec.RunSpec` (built from the command line by
``rectest.pipeline.compose``, or in Python) and changes no process-wide state: the entry point sets
threads and starts torch.distributed (see :mod:`rectest.pipeline.process`).

Story of :func:`run`:
  1. :func:`prepare` (nothing written yet, so bad input leaves nothing behind): load the data option,
     know the simulation's sizes, expand the sweep into the engine's checked policy and dynamics, build
     (but not fit) the recommender;
  2. claim the run folder (new, or resume an interrupted run of the same specification);
  3. train the recommender and export unit-norm embeddings (skipped when nothing uses a model, when an
     earlier run's export is the start, and on resume, where the export is read back);
  4. choose creators and users, build the starting vectors (:mod:`rectest.pipeline.start`);
  5. run the batched simulation with logging, checkpoints and periodic retraining, then write
     summary.json, table.md, figures and TensorBoard summaries (:mod:`rectest.pipeline.simulate`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rectest.data.bundle import DataBundle
from rectest.errors import ConfigError
from rectest.pipeline import simulate, start, training
from rectest.pipeline.rundir import RunFolder
from rectest.pipeline.spec import AUTO, Device, Recommender, RunSpec, Sampler
from rectest.pipeline.sweep import Sweep, expand, theorem_conditions
from rectest.report import layout
from rectest.report.geometry import geometry_console
from rectest.report.summary import write_summary
from rectest.sim import UserShards
from rectest.sim.rejection import rejected_replicas

log = logging.getLogger("rectest")


@dataclass
class Prepared:
    """A run checked and ready: its data, sizes and sweep, and the recommender to fit (if any).

    Attributes:
        spec: the run specification.
        bundle: the loaded data.
        m, n, d: the simulated users, creators and dimension.
        sweep: the replicas and the engine's checked policy and dynamics.
        todo: the built, unfitted recommender; None when the run trains nothing.
        timings: wall seconds of the stages so far (``load_s``).
    """

    spec: RunSpec
    bundle: DataBundle
    m: int
    n: int
    d: int
    sweep: Sweep
    todo: training.Plan | None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """The scores one step computes on average: replicas x users x creators, except that replicas drawn by
        rejection sampling score their full rows on logged steps only (one step in ``sim.log_every``); it
        chooses the CPU threads (a softmax run on ml-100k took 40 s on one thread, 64 s on two)."""
        R, rows = len(self.sweep.replicas), self.m * self.n
        drawn = 0
        if self.spec.sim.sampler is Sampler.rejection:
            policy = self.sweep.policy.bind(R, self.n, torch.device("cpu"), torch.float32)
            drawn = sum(len(replicas) for replicas, _ in rejected_replicas(policy))
        return (R - drawn) * rows + drawn * rows // self.spec.sim.log_every


def run(spec: RunSpec, run_dir: Path) -> Path:
    """Run a specification into ``run_dir`` and return the folder.

    Raises:
        RectestError: bad input (a message naming the file or value and what was expected).
    """
    return execute(prepare(spec), run_dir)


def prepare(spec: RunSpec) -> Prepared:
    """Load the data and check every value against it, before anything is written (story step 1).

    Raises:
        ConfigError: a value out of range or a combination that cannot run, naming the key.
    """
    resolve_device(spec.sim.device)  # sim.device=cuda without CUDA fails here
    clock = time.perf_counter()
    bundle = spec.data()
    timings = {"load_s": time.perf_counter() - clock}
    m, n, d = _planned_sizes(spec, bundle)
    sweep = expand(spec, n, d)
    trains = _trains(spec, bundle)
    if spec.sim.shards != 1 and (trains or spec.sim.recommender is Recommender.learned):
        raise ConfigError(
            f"sim.shards={spec.sim.shards}: a sharded run starts from vectors every process can read and "
            "uses the oracle recommender; train first (sim.steps=0), then simulate with sim.init=run:PATH "
            "(or use sim.init=truth or data=embeddings)"
        )
    todo = training.plan(spec, bundle, progress_mode(spec.logger.progress)) if trains else None
    return Prepared(spec, bundle, m, n, d, sweep, todo, timings)


def execute(ready: Prepared, run_dir: Path) -> Path:
    """Claim the folder, train, build the start and simulate (story steps 2-5)."""
    spec, timings = ready.spec, dict(ready.timings)
    shards = _shards(spec, ready.m)
    folder = RunFolder(Path(run_dir))
    writes = shards is None or shards.rank == 0
    try:
        resume = _claim(folder, spec, shards)  # 2.
        clock = time.perf_counter()
        begin = _start(ready, folder, resume)  # 3. + 4.
        timings["train_s"] = time.perf_counter() - clock
        replicas = ready.sweep.replicas
        geometry = start.geometry(begin, spec.sim)
        if writes:
            _report_theorem(ready.sweep, ready.n)
            print(geometry_console(geometry))
        extra = {
            "world": {"m": ready.m, "n": ready.n, "d": ready.d},
            "values": [r.params for r in replicas],  # every swept key's value, per replica
            "theorem": [theorem_conditions(r.params, ready.n) for r in replicas],
            "training": begin.train_metrics,
            "geometry": geometry,
        }
        if spec.sim.steps == 0:  # train and export only: the recommender, its geometry, no simulation
            if writes:
                write_summary({**extra, "timings": timings, "horizon": 0}, folder.summary)
                print(f"run folder: {folder.root} (sim.steps=0: trained and exported, nothing simulated)")
            return folder.root
        settings = simulate.Settings(
            sim=spec.sim,
            logger=spec.logger,
            device=resolve_device(spec.sim.device, shards),
            progress=progress_mode(spec.logger.progress) if writes else "off",
            title=_title(ready),
            setting=_paper_setting(ready.bundle.name, spec.sim.init),
            shards=shards,
        )
        simulate.simulate(begin, ready.sweep, settings, folder, resume, extra, timings)  # 5.
    finally:
        if writes:
            folder.release()
    return folder.root


def objective(folder: Path, measure: str) -> float:
    """The final value of ``measure`` averaged over every replica of a finished run (NaN when the run
    simulated nothing): what the entry point returns to Hydra sweepers."""
    summary = json.loads((Path(folder) / layout.SUMMARY_FILE).read_text())
    finals = [float(rep["final"][measure]) for rep in summary.get("replicas", [])]
    return sum(finals) / len(finals) if finals else float("nan")


def resolve_device(name: Device, shards: UserShards | None = None) -> torch.device:
    """``auto`` picks CUDA when present (a sharded run: this process's local GPU); ``cuda`` without CUDA
    is an error."""
    if name is Device.cuda and not torch.cuda.is_available():
        raise ConfigError("sim.device=cuda: CUDA is not available on this machine (use auto or cpu)")
    if name is Device.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device() if shards is not None else 0)


def progress_mode(enabled: bool) -> str:
    """``bar`` (live bars) when stderr is a terminal, ``lines`` (a plain line now and then) when it is a
    file or a pipe, ``off`` when ``logger.progress=false``."""
    if not enabled:
        return "off"
    return "bar" if sys.stderr.isatty() else "lines"


def _shards(spec: RunSpec, m: int) -> UserShards | None:
    """This process's share of the users, or None for a one-process run.

    Raises:
        ConfigError: ``sim.shards`` does not match the processes torchrun started.
    """
    if spec.sim.shards == 1:
        return None
    world = (
        torch.distributed.get_world_size()
        if torch.distributed.is_available() and torch.distributed.is_initialized()
        else 1
    )
    if spec.sim.shards != AUTO and spec.sim.shards != world:
        raise ConfigError(
            f"sim.shards={spec.sim.shards}: this run has {world} process(es); launch it with "
            f"torchrun --nproc_per_node={spec.sim.shards} -m rectest.train ... (or sim.shards=auto)"
        )
    if world > m:
        raise ConfigError(f"sim.shards: {world} processes for {m} users; expected at most one per user")
    return UserShards(m)


def _claim(folder: RunFolder, spec: RunSpec, shards: UserShards | None) -> bool:
    """Rank 0 claims the folder (see :meth:`RunFolder.claim`); the other ranks resume when it does."""
    if shards is None or shards.world == 1:
        return folder.claim(spec.identity)
    resume = [folder.claim(spec.identity) if shards.rank == 0 else None]
    torch.distributed.broadcast_object_list(resume, src=0)
    return bool(resume[0])


def _start(ready: Prepared, folder: RunFolder, resume: bool) -> start.Start:
    """Train (or reload) the recommender and build the starting vectors."""
    spec, bundle = ready.spec, ready.bundle
    if bundle.embeddings is not None:
        return start.from_embeddings(bundle, spec.sim, spec.seed)
    earlier = spec.sim.earlier_run
    if earlier is not None:  # simulate only, from an earlier run's exported embeddings
        vectors = training.load_export_for(Path(earlier), bundle.interactions)
    elif ready.todo is None:  # sim.init=truth with the oracle: the world's vectors, no model to train
        vectors = bundle.world.users, bundle.world.creators, {}
    elif resume and training.has_export(folder.root):
        vectors = training.load_export(folder.root)
    else:
        vectors = training.train_and_export(ready.todo, bundle, folder.root)
    return start.from_vectors(bundle, spec.sim, spec.seed, *vectors)


def _paper_setting(data: str, init: str) -> str | None:
    """Which of the paper's tables is comparable with this run: its i.i.d. synthetic world only when the run
    starts from it (``sim.init=truth``), its MovieLens table for MovieLens data; None otherwise."""
    if data == "synthetic":
        return "synthetic" if init == "truth" else None
    return data if data.startswith("ml-") else None


def _title(ready: Prepared) -> str:
    keys = ready.sweep.keys
    swept = f", {', '.join(keys)} swept" if keys else ""
    return f"{ready.bundle.name}: {ready.spec.policy.name} policy{swept}"


def _report_theorem(sweep: Sweep, n: int) -> None:
    """Log, per swept setting, whether the polarization theorem's conditions hold (reported, not enforced)."""
    verdicts: dict[str, bool] = {}
    for rep in sweep.replicas:
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


def _planned_sizes(spec: RunSpec, bundle: DataBundle) -> tuple[int, int, int]:
    """(m users, n creators, d dimensions) of the simulation, known before any training."""
    sim = spec.sim
    if bundle.embeddings is not None:
        if sim.recommender is Recommender.learned:
            raise ConfigError(
                "sim.recommender=learned needs a trained model; data=embeddings supports oracle only"
            )
        if sim.init != "embeddings":
            raise ConfigError(f"sim.init={sim.init}: data=embeddings starts from its own vectors")
        users, creators = bundle.embeddings
        m_all, n_all, d = users.shape[0], creators.shape[0], creators.shape[1]
    else:
        m_all, n_all = bundle.interactions.num_users, bundle.interactions.num_items
        if sim.init == "truth":
            if bundle.world is None:
                raise ConfigError(
                    f"sim.init=truth needs data=synthetic; data={bundle.name} has no true vectors"
                )
            d = bundle.world.creators.shape[1]
        elif sim.earlier_run is not None:
            d = training.exported_dim(Path(sim.earlier_run))
        else:
            d = spec.model.dim
    m = m_all if sim.n_users is None else min(sim.n_users, m_all)
    every = sim.n_creators is None or sim.creators.value == "all"  # sim.creators=all ignores the count
    return m, (n_all if every else min(sim.n_creators, n_all)), d


def _trains(spec: RunSpec, bundle: DataBundle) -> bool:
    """Whether this run trains a recommender: not for bring-your-own embeddings, not when it starts from
    an earlier run's export (``sim.init=run:PATH``), not for ``sim.init=truth`` with the oracle (nothing
    would use the model)."""
    if bundle.embeddings is not None or spec.sim.earlier_run is not None:
        return False
    return not (spec.sim.init == "truth" and spec.sim.recommender is Recommender.oracle)
