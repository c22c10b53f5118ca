"""Drive one batched simulation: the loop around the engine, its logs, checkpoints and final report.

Plain arguments only (the pipeline reads the config). Story of :func:`simulate`:
  1. build the engine's state, policy and dynamics (one replica per swept value and seed);
  2. resume from ``checkpoint.pt`` when the run was interrupted;
  3. each step: (learned recommender) score with the platform's embeddings; step the engine; log the
     feedback and retrain when due; every ``FLUSH_SECONDS`` and before each checkpoint, append the new
     metric rows to metrics.csv (flushed to disk) and TensorBoard; checkpoint every ``checkpoint_every``
     steps (a resumed run drops the rows logged after its checkpoint, so none is lost or duplicated);
  4. write summary.json, table.md, figures and TensorBoard summaries; print a console summary.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm

from rectest.errors import ConfigError, Interrupted
from rectest.files import atomic_write_text
from rectest.pipeline.rundir import RunFolder, load_checkpoint, save_checkpoint
from rectest.pipeline.spec import LoggerSpec, Recommender, SimSpec
from rectest.pipeline.sweep import Replica, Sweep
from rectest.report.console import console_summary, timings_line
from rectest.report.frames import history_frame
from rectest.report.geometry import GEOMETRY
from rectest.report.metrics_log import MetricsLog
from rectest.report.run_reports import write_run_reports
from rectest.report.summary import write_summary
from rectest.report.values import (
    EXITS,
    MEASURES,
    PAPER_MEASURES,
    REPLICA,
    SEED,
    STEP,
    setting_key,
    setting_label,
)
from rectest.sim import Simulation, State, UserShards, random_sphere
from rectest.sim.geometry import bipolar_prediction, poles
from rectest.sim.online import OnlineRecommender

log = logging.getLogger("rectest")

# new metric rows reach metrics.csv and TensorBoard at least this often (and at every checkpoint)
FLUSH_SECONDS = 2.0
PROGRESS_LINES = 10  # without a terminal, the loop logs its step this many times per run
RETRAIN_TAG = "retrain/rmse"  # TensorBoard tag of the learned model's error against the true scores
# full-batch Adam steps per warm-start epoch of the learned recommender
GRADIENT_STEPS_PER_EPOCH = 10
# the i.i.d. reference of the t = 0 policy measures uses at most this many users (RR and RD are user means)
IID_MAX_USERS = 4096


@dataclass(frozen=True)
class Settings:
    """What the loop needs besides the starting vectors and the sweep: the spec's loop and output
    settings, and what the pipeline derived from them."""

    sim: SimSpec
    logger: LoggerSpec
    device: torch.device
    progress: str  # bar | lines | off (see rectest.pipeline.runner.progress_mode)
    title: str
    setting: str | None  # "synthetic" or an "ml-*" release: which of the paper's tables to show beside ours
    shards: UserShards | None = None  # this process's share of the users (None: all of them)

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.sim.dtype.value)

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files (rank 0 of a sharded run, or the only process)."""
        return self.shards is None or self.shards.rank == 0


def build_simulation(start, sweep: Sweep, settings: Settings, sharded: bool = True) -> Simulation:
    """The engine for the sweep's replicas, every one starting from the same vectors."""
    as_t = lambda x: torch.as_tensor(x, dtype=settings.dtype, device=settings.device)  # noqa: E731
    state = State(as_t(start.users), as_t(start.creators))  # one replica; the engine copies it to every seed
    return Simulation(
        state,
        sweep.policy,
        sweep.dynamics,
        seeds=sweep.seeds,
        log_every=settings.sim.log_every,
        chunk_size=settings.sim.chunk_size,
        sampler=settings.sim.sampler.value,
        r_polarized=settings.sim.r_polarized,
        shards=settings.shards if sharded else None,
        churn=settings.sim.churn.engine(),
    )


@contextmanager
def _no_memory_fill() -> Iterator[None]:
    """Lightning's ``deterministic=True`` leaves ``torch.use_deterministic_algorithms(True)`` on after training,
    and with it every new tensor is filled with NaN before use (``fill_uninitialized_memory``): an extra pass
    over each of the engine's temporaries, about a quarter of a step at real-data scale. The engine reads no
    uninitialised memory, so the simulation runs without the fill (its draws are the same)."""
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill


@_no_memory_fill()
def simulate(
    start,
    sweep: Sweep,
    settings: Settings,
    folder: RunFolder,
    resume: bool,
    extra: dict,
    timings: dict[str, float] | None = None,
) -> dict:
    """Run (or resume) the simulation and write every output of the run folder.

    Args:
        start: the starting vectors (:class:`rectest.pipeline.Start`).
        sweep: the replicas (one per swept value and seed), the swept keys (metrics.csv columns) and the
            engine's policy and dynamics.
        settings: the loop's settings.
        folder: the run folder.
        resume: continue from ``checkpoint.pt``.
        extra: entries added to summary.json (training metrics, theorem conditions).
        timings: wall seconds of the stages before this one (``load_s``, ``train_s``); summary.json's
            ``timings`` adds ``simulate_s``, ``steps_per_second`` (steps run by this process) and ``report_s``.

    Raises:
        Interrupted: Ctrl-C (SIGINT) during the loop; the message names the step and how to resume.

    Returns:
        The summary written to ``summary.json``.
    """
    replicas, keys = sweep.replicas, sweep.keys
    sim = build_simulation(start, sweep, settings)  # 1.
    params = [{k: r.params[k] for k in keys} for r in replicas]
    seeds = [r.seed for r in replicas]
    online = _online(start, replicas, settings)
    every = torch.tensor([int(r.params["retrain_every"]) for r in replicas], device=settings.device)
    pairs = _error_pairs(start, settings)
    columns = [STEP, REPLICA, SEED, *keys, *MEASURES, *([EXITS] if sim.churn is not None else [])]
    rows_done, metrics = 0, None
    if resume:  # 2.
        ck = load_checkpoint(folder.checkpoint)
        try:
            sim.load_state_dict(ck["sim"])
            if online is not None:
                online.load_state_dict(ck["online"])
            rows_done = int(ck["history_rows"])
            last_logged = int(ck["last_logged_step"])
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise ConfigError(
                f"checkpoint {folder.checkpoint}: does not match this run ({type(err).__name__}: {err}); "
                "delete it to start the run again"
            ) from None
        if settings.writes:
            _truncate_retrain_log(folder, sim.t)
            metrics = MetricsLog.open_for_resume(folder.metrics, last_step=last_logged, columns=columns)
            log.info("resuming %s at step %d", folder.root, sim.t)
    elif settings.writes:
        metrics = MetricsLog(folder.metrics, columns)
    writers = _tensorboard(folder, keys, settings, purge_step=sim.t if resume else None)
    if writers is not None and not resume and settings.logger.projector:
        writers.projector(sim.users, sim.creators, 0, start)  # the start (a one-process run: all users)
    flushed = time.monotonic()
    bar = tqdm(
        total=settings.sim.steps,
        initial=sim.t,
        desc="simulate",
        unit="step",
        disable=settings.progress != "bar",
    )
    every_line = max(1, settings.sim.steps // PROGRESS_LINES)
    clock, first_step = time.perf_counter(), sim.t
    try:
        while sim.t < settings.sim.steps:  # 3.
            last = sim.t == settings.sim.steps - 1  # the last step is always logged
            if online is not None:
                before = (
                    sim.users,
                    sim.creators,
                )  # time-t vectors (the engine replaces, never mutates, them)
                shown = sim.step(*online.vectors(), log=last)
                online.observe(shown, *before)
                due = (every > 0) & (sim.t % every.clamp(min=1) == 0)
                if bool(due.any()):
                    online.retrain(due)
                    rmse = online.rmse(sim.users, sim.creators, pairs)
                    _log_retrain(folder, sim.t, rmse, seeds, params, writers)
            else:
                sim.step(log=last)
            due_checkpoint = settings.sim.checkpoint_every and sim.t % settings.sim.checkpoint_every == 0
            if due_checkpoint or sim.t == settings.sim.steps or time.monotonic() - flushed > FLUSH_SECONDS:
                rows_done = _flush_rows(sim, rows_done, params, seeds, metrics, writers)
                flushed = time.monotonic()
            if due_checkpoint and sim.t < settings.sim.steps:
                _checkpoint(folder, sim, online, rows_done, settings.writes)
            bar.update(1)
            if settings.progress == "lines" and (sim.t % every_line == 0 or sim.t == settings.sim.steps):
                log.info("simulate: step %d of %d", sim.t, settings.sim.steps)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted at step {sim.t}; run the same command to resume") from None
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    elapsed = time.perf_counter() - clock
    timings = {
        **(timings or {}),
        "simulate_s": elapsed,
        "steps_per_second": (sim.t - first_step) / elapsed if elapsed > 0 else None,
    }
    if not settings.writes:  # a sharded run's other ranks: join the collectives of the final state only
        sim.gather_state()
        return {}
    return _finish(folder, sim, start, sweep, settings, writers, extra, timings)  # 4.


def _online(start, replicas: list[Replica], settings: Settings) -> OnlineRecommender | None:
    if settings.sim.recommender is not Recommender.learned:
        return None
    as_t = lambda x: torch.as_tensor(x, dtype=settings.dtype, device=settings.device)  # noqa: E731
    return OnlineRecommender(
        as_t(start.model_users),
        as_t(start.model_creators),
        replicas=len(replicas),
        window=settings.sim.window,
        noise=settings.sim.feedback_noise,
        epochs=max(1, settings.sim.warm_start_epochs) * GRADIENT_STEPS_PER_EPOCH,
        seed=replicas[0].seed,
    )


def _error_pairs(start, settings: Settings, count: int = 4096) -> torch.Tensor:
    """A fixed sample of (user, creator) pairs on which the learned model's error is logged."""
    g = torch.Generator().manual_seed(12345)
    m, n = start.users.shape[0], start.creators.shape[0]
    pairs = torch.stack([torch.randint(m, (count,), generator=g), torch.randint(n, (count,), generator=g)], 1)
    return pairs.to(settings.device)


def _log_retrain(
    folder: RunFolder, step: int, rmse: torch.Tensor, seeds: list[int], params: list[dict], writers
) -> None:
    """Append the learned model's error against the truth (per replica) to retrain.csv and TensorBoard."""
    new = not folder.retrain_log.exists()
    with open(folder.retrain_log, "a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(["step", "replica", "seed", *params[0].keys(), "rmse"])
        for r, value in enumerate(rmse.tolist()):
            w.writerow([step, r, seeds[r], *params[r].values(), value])
    if writers is not None:  # mean over the seeds of each swept setting, tag retrain/rmse
        groups: dict[tuple, list[float]] = {}
        for r, value in enumerate(rmse.tolist()):
            groups.setdefault(tuple(params[r].items()), []).append(value)
        for key, values in groups.items():
            writers.writer(dict(key)).add_scalar(RETRAIN_TAG, sum(values) / len(values), global_step=step)


def _truncate_retrain_log(folder: RunFolder, step: int) -> None:
    """Drop retrain.csv rows written after the checkpoint at ``step`` (the resumed run writes them again)."""
    if not folder.retrain_log.exists():
        return
    with open(folder.retrain_log, newline="") as fh:
        rows = list(csv.reader(fh))
    kept = rows[:1] + [r for r in rows[1:] if len(r) == len(rows[0]) and int(r[0]) <= step]
    buf = io.StringIO()
    csv.writer(buf).writerows(kept)
    atomic_write_text(folder.retrain_log, buf.getvalue())


def _flush_rows(sim, done: int, params, seeds, metrics: MetricsLog | None, writers) -> int:
    """Append the history rows not yet written; return the new count."""
    hist = sim.history
    total = int(hist[STEP].numel())
    if total == done or metrics is None:
        return total
    chunk = {k: v[done:] for k, v in hist.items()}
    frame = history_frame(chunk, params, seeds)
    metrics.append_frame(frame)
    if writers is not None:
        writers.scalars(frame)
    return total


def _checkpoint(folder: RunFolder, sim, online, rows_done: int, writes: bool) -> None:
    hist = sim.history
    last = int(hist[STEP][-1]) if hist[STEP].numel() else -1
    state = {"sim": sim.state_dict(), "history_rows": rows_done, "last_logged_step": last}  # every rank
    if online is not None:
        state["online"] = online.state_dict()
    if writes:
        save_checkpoint(folder.checkpoint, state)


def _tensorboard(folder: RunFolder, keys, settings: Settings, purge_step: int | None):
    if not settings.logger.tensorboard or not settings.writes:
        return None
    from rectest.report.tensorboard import SimWriters

    return SimWriters(folder.tensorboard, keys, purge_step=purge_step)


def _finish(
    folder: RunFolder,
    sim,
    start,
    sweep: Sweep,
    settings: Settings,
    writers,
    extra: dict,
    timings: dict[str, float],
) -> dict:
    clock = time.perf_counter()
    replicas, keys = sweep.replicas, sweep.keys
    final = sim.gather_state()  # all users (a collective when sharded)
    params = [{k: r.params[k] for k in keys} for r in replicas]
    frame = history_frame(sim.history, params, [r.seed for r in replicas])  # in memory (resumed runs too)
    extra = dict(extra)
    # per replica, the first step whose state is r-polarized (every step is checked, logged or not)
    extra["polarized_at"] = [int(t) if t >= 0 else None for t in sim.first_polarized_step.tolist()]
    if sim.churn is not None:  # per replica, the creators replaced over the whole run
        extra["exits"] = sim.churn.exits.tolist()
    if extra.get(GEOMETRY) is not None:
        extra[GEOMETRY] = {**extra[GEOMETRY], "t0": _t0_measures(frame, start, sweep, settings)}
    summary = write_run_reports(
        frame,
        keys,
        folder.root,
        settings.title,
        settings.setting,
        settings.logger.figures,
        extra={"horizon": settings.sim.steps, **extra},
        poles=_poles(final, replicas),
        write_summary_file=False,  # written last, below: it marks the run as finished
    )
    if writers is not None:
        if settings.logger.figures:
            for png in sorted(folder.figures.glob("*.png")):  # measures, UD, clusters, polarized
                writers.figure(png, tag=f"figures/{png.stem}")
        writers.text("table", folder.table.read_text())  # the final values, as in table.md
        if settings.logger.projector:
            writers.projector(final.users, final.creators, sim.t, start)
        writers.hparams(summary)
        if summary.get(GEOMETRY):
            writers.geometry(summary[GEOMETRY])
        writers.close()
    summary["timings"] = {**timings, "report_s": time.perf_counter() - clock}
    write_summary(summary, folder.summary)
    folder.checkpoint.unlink(missing_ok=True)
    print(console_summary(summary, keys))
    print(timings_line(summary["timings"]))
    print(f"run folder: {folder.root}")
    return summary


def _poles(final: State, replicas: list[Replica]) -> list[dict]:
    """Per replica: the principal axis of the final state, the pole fractions and the closed forms."""
    found = poles(final.users, final.creators)
    n, out = final.creators.shape[1], []
    for r, rep in enumerate(replicas):
        p = rep.params
        closed_form = p["rho"] == 0 and p.get("mmr_lambda") is None
        a_c, a_u = float(found["creators_plus"][r]), float(found["users_plus"][r])
        predicted = (
            bipolar_prediction(a_c, a_u, n, p["beta"], p["k"], p["tau"], p["eps"]) if closed_form else None
        )
        out.append(
            {
                "axis": [float(x) for x in found["axis"][r].tolist()],
                "users_plus": a_u,
                "creators_plus": a_c,
                "radius": float(found["radius"][r]),
                "predicted": predicted,
            }
        )
    return out


def _t0_measures(frame, start, sweep: Sweep, settings: Settings) -> list[dict]:
    """Per swept setting: the measures logged at step 0, and the same policy on an i.i.d. uniform world."""
    first = frame[frame[STEP] == frame[STEP].min()]
    keys, reps, seen = sweep.keys, [], set()
    for rep in sweep.replicas:  # one replica per setting, in first-seen order
        key = tuple(rep.params[k] for k in keys)
        if key not in seen:
            seen.add(key)
            reps.append(rep)
    m, n = min(start.users.shape[0], IID_MAX_USERS), start.creators.shape[0]
    d = start.users.shape[1]
    g = torch.Generator().manual_seed(0)
    world = SimpleNamespace(users=random_sphere(1, m, d, g)[0], creators=random_sphere(1, n, d, g)[0])
    iid = build_simulation(
        world, sweep.subset([Replica(seed=0, params=r.params) for r in reps]), settings, False
    )
    iid.step(log=True)
    hist = iid.history
    out = []
    for i, rep in enumerate(reps):
        params = {k: rep.params[k] for k in keys}
        wanted = setting_key([rep.params[k] for k in keys])
        rows = first[[setting_key(list(row)) == wanted for row in first[keys].itertuples(index=False)]]
        out.append(
            {
                "params": params,
                "label": setting_label(params),
                "measured": {m_: float(rows[m_].astype(float).mean()) for m_ in PAPER_MEASURES},
                "iid": {m_: float(hist[m_][0, i]) for m_ in PAPER_MEASURES},
            }
        )
    return out
