"""The orchestration around the engine: the typed run specification, the stages and the run folder.

- :mod:`~rectest.pipeline.spec`: the typed run specification (no Hydra);
- :mod:`~rectest.pipeline.compose`: the Hydra config -> the specification (with ``rectest/train.py``, the
  only modules that import Hydra or OmegaConf);
- :mod:`~rectest.pipeline.runner`: :func:`run` = :func:`prepare` + :func:`execute`, the whole story;
- stages: :mod:`~rectest.pipeline.training` (fit and export), :mod:`~rectest.pipeline.start` (the starting
  vectors), :mod:`~rectest.pipeline.sweep` (replicas and the engine's policy and dynamics),
  :mod:`~rectest.pipeline.simulate` (the loop, its logs and reports);
- :mod:`~rectest.pipeline.rundir` (the run folder and its file names), :mod:`~rectest.pipeline.process`
  (threads and torch.distributed: process-wide state, set by the entry point).
"""

from rectest.pipeline.process import use_threads
from rectest.pipeline.runner import Prepared, execute, objective, prepare, run
from rectest.pipeline.spec import DynamicsSpec, LoggerSpec, ModelSpec, PolicySpec, RunSpec, SimSpec

__all__ = [
    "DynamicsSpec",
    "LoggerSpec",
    "ModelSpec",
    "PolicySpec",
    "Prepared",
    "RunSpec",
    "SimSpec",
    "execute",
    "objective",
    "prepare",
    "run",
    "use_threads",
]
