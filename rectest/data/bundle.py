"""What a data option hands to the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rectest.data.interactions import Interactions, Split
from rectest.data.synthetic import SyntheticWorld


@dataclass
class DataBundle:
    """The output of every ``conf/data`` option.

    Attributes:
        name: ``synthetic``, ``ml-100k``, ..., ``csv`` or ``embeddings``.
        interactions: the full log; None for ``embeddings``.
        split: train / val / test; None for ``embeddings``.
        world: the true vectors, only for ``synthetic``.
        embeddings: ``(users (m, d), creators (n, d))`` unit-norm float32, only for ``embeddings``.
    """

    name: str
    interactions: Interactions | None
    split: Split | None
    world: SyntheticWorld | None = None
    embeddings: tuple[np.ndarray, np.ndarray] | None = None
