"""Entry point: ``python -m rectest.train [group=option ...] [+experiment=NAME] [key=value ...]``.

A thin Hydra wrapper around :func:`rectest.pipeline.run`: it turns the composed config into the typed
:class:`~rectest.pipeline.spec.RunSpec` once, sets the process-wide state (torch's threads, the
torch.distributed group under torchrun, warning filters, library log levels) and returns the run's
objective (``sim.objective``, the final measure averaged over replicas) so Hydra sweepers can optimise it.
Every user error ends with one line ``rectest: error: ...`` on
stderr and exit status 2, never a traceback: bad files and values (raised by rectest), and bad overrides
(an unknown group option, a misspelt key), which are checked by composing the config once before Hydra
runs the job. Ctrl-C prints ``rectest: interrupted ...`` and exits 130; a simulation stopped by the
NaN/Inf guard exits 3. A run that failed before its first checkpoint leaves no folder behind.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rectest.errors import ConfigError, RectestError
from rectest.pipeline import compose as _config  # registers the config schemas
from rectest.pipeline.process import launched_by_torchrun
from rectest.pipeline.rundir import RunFolder, RunLocked
from rectest.report import layout

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
OUTPUTS = "outputs"
# Messages of the libraries that tell a user of rectest nothing they can act on.
QUIET_WARNINGS = (
    r".*LeafSpec.*",
    r".*IterableDataset.*has `__len__` defined.*",
    r".*smaller than the logging interval.*",
    r".*does not have many workers.*",
    r".*`training_step` returned `None`.*",
)


def quiet_libraries() -> None:
    """Silence the libraries' chatter (Lightning's hardware lines and tips, known-harmless warnings)."""
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run the pipeline for one composed config; return its objective (for Hydra sweepers)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        RunFolder(run_dir).lock_now()  # before the heavy imports: a second process is refused at once
    except RunLocked as err:
        fail(f"rectest: error: {err}", 2)
    from rectest.pipeline import process
    from rectest.sim import SimulationError

    quiet_libraries()
    try:
        return run_job(cfg, run_dir)
    except RunLocked as err:  # another process's folder: leave it alone
        fail(f"rectest: error: {err}", 2)
    except RectestError as err:
        discard_unfinished(run_dir)
        fail(f"rectest: {'' if err.exit_code == 130 else 'error: '}{err}", err.exit_code)
    except KeyboardInterrupt:
        discard_unfinished(run_dir)
        fail("rectest: interrupted; run the same command to resume (or to start again)", 130)
    except SimulationError as err:  # the NaN/Inf guard: names the step and the replicas
        fail(f"rectest: simulation stopped: {err}", 3)
    finally:
        process.leave_processes()
    return None


def run_job(cfg: DictConfig, run_dir: Path) -> float:
    """One run of a composed config: the typed spec, process state (threads; torch.distributed under
    torchrun with ``sim.shards``), the pipeline. Returns ``sim.objective``'s final value averaged over the
    replicas (NaN when nothing was simulated, e.g. ``sim.steps=0``).

    Raises:
        RectestError: bad input.
    """
    from rectest.pipeline import process, runner

    spec = _config.build_spec(cfg)
    if spec.sim.shards != 1:
        process.join_processes(cuda=runner.resolve_device(spec.sim.device).type == "cuda")
    ready = runner.prepare(spec)
    process.use_threads(spec.sim.threads, ready.size)
    folder = runner.execute(ready, run_dir)
    if spec.sim.steps == 0 or not (folder / layout.SUMMARY_FILE).exists():
        return float("nan")
    return runner.objective(folder, spec.sim.objective)


def fail(message: str, code: int) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def discard_unfinished(run_dir: Path) -> None:
    """Remove a run folder that holds nothing to resume (no checkpoint, no finished summary), and the
    empty folders above it up to ``outputs/``, so the corrected command can reuse the name."""
    if (
        not run_dir.is_dir()
        or (run_dir / layout.CHECKPOINT_FILE).exists()
        or (run_dir / layout.SUMMARY_FILE).exists()
    ):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    outputs = (Path.cwd() / OUTPUTS).resolve()
    parent = run_dir.resolve().parent
    while parent != outputs and outputs in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def check_overrides(argv: list[str]) -> DictConfig | None:
    """Compose the config from plain command-line overrides once, before Hydra runs the job, so an
    unknown option or a misspelt key is one line (Hydra would print a traceback-like report and exit 1).

    Skipped when Hydra flags (``-m``, ``--help``, ``--cfg``, ...) are given: Hydra handles those itself.

    Returns:
        The composed config (without Hydra's node), or None when skipped.

    Raises:
        ConfigError: the overrides do not compose, or add a top-level key the config does not have.
    """
    if any(arg.startswith("-") for arg in argv):
        return None
    argv = [arg for arg in argv if not arg.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))]
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=argv)
    except Exception as err:  # noqa: BLE001  (any composition failure is a bad override)
        cause = err.__cause__
        if cause is not None and "Error merging override" in str(err):  # a value the schema refuses
            override = str(err).split("Error merging override", 1)[1].strip().splitlines()[0]
            raise ConfigError(f"{override}: {_config.plain_message(cause)}") from None
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise ConfigError(f"bad override ({text})") from None
    unknown = sorted(set(cfg) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown top-level key(s) {unknown}: the config has {', '.join(TOP_LEVEL_KEYS)}; "
            "a group's values are set as group.key=value (e.g. policy.k=3)"
        )
    for group, schema in _config.SCHEMAS.items():
        extra = sorted(set(cfg[group]) - {f.name for f in dataclasses.fields(schema)})
        if extra:
            raise ConfigError(
                f"unknown key(s) {[f'{group}.{k}' for k in extra]}: {group} has no such setting"
            )
    return cfg


def claim_named_folder(cfg: DictConfig, argv: list[str]) -> None:
    """With an explicit ``hydra.run.dir=`` or ``run_name=``, lock the run folder and refuse a finished or
    other run before Hydra writes its ``.hydra/`` files there (the default name is new every time)."""
    given = dict(arg.split("=", 1) for arg in argv if arg.startswith(("hydra.run.dir=", "run_name=")))
    if "hydra.run.dir" in given:
        folder = RunFolder(Path(given["hydra.run.dir"]))
    elif "run_name" in given:
        folder = RunFolder(Path(OUTPUTS) / given["run_name"])
    else:
        if launched_by_torchrun():
            raise ConfigError(
                "a run launched by torchrun needs run_name=NAME: every process writes into one run folder"
            )
        return
    existed = folder.root.exists()
    folder.lock_now()
    if existed:
        folder.refuse_if_taken(_config.identity(cfg))


class PoolConvergence(Callback):
    """A Hydra callback (``hydra.callbacks`` of ``+experiment=convergence``): when a multirun ends, pool the
    time to polarization of every run under its sweep folder into ``convergence.md``, its figure and
    TensorBoard (``tb/``) there."""

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        from rectest.report.convergence import pool_folders

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            written = pool_folders([sweep_dir], sweep_dir, tensorboard=True)
        except RectestError as err:  # e.g. every job failed: the jobs' own errors were already printed
            print(f"rectest: no pooled convergence report: {err}", file=sys.stderr)
            return
        print(f"pooled time to polarization: {written[0]}")


TOP_LEVEL_KEYS = ("data", "model", "policy", "dynamics", "sim", "trainer", "logger", "seed", "run_name")


def cli() -> None:
    """``python -m rectest.train``: check the overrides, then hand over to Hydra."""
    argv = sys.argv[1:]
    try:
        cfg = check_overrides(argv)
        if cfg is not None:
            claim_named_folder(cfg, argv)
    except ConfigError as err:
        fail(f"rectest: error: {err}", 2)
    main()


if __name__ == "__main__":
    cli()
