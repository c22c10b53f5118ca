"""Entry point: ``python -m rectest.train [group=option ...] [+experiment=NAME] [key=value ...]``.

A thin Hydra wrapper around :func:`rectest.pipeline.run`. User errors (bad files, bad values) end with one
line on stderr and exit status 2, never a traceback; a simulation stopped by the NaN/Inf guard exits 3.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from rectest import config as _config  # noqa: F401  (registers the config schemas)
from rectest.errors import RectestError
from rectest.sim import SimulationError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    """Run the pipeline for one composed config."""
    from rectest.pipeline import run

    try:
        run(cfg)
    except RectestError as err:
        _discard_if_unused(Path(HydraConfig.get().runtime.output_dir))
        print(f"rectest: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except SimulationError as err:  # the NaN/Inf guard: names the step and the replicas
        print(f"rectest: simulation stopped: {err}", file=sys.stderr)
        sys.exit(3)


def _discard_if_unused(run_dir: Path) -> None:
    """Remove a run folder that holds only Hydra's own files (bad input stopped the run before any work)."""
    hydra_only = {".hydra", "train.log"}
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= hydra_only:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
