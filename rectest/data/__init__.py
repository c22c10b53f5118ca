"""Data layer: MovieLens releases, generic logs, synthetic worlds, user embeddings, splits.

Light imports only (numpy, pandas, pyarrow); the Lightning DataModule lives in ``datamodule.py``.
"""

from rectest.data.bundle import DataBundle
from rectest.data.embeddings import load_embeddings
from rectest.data.generic import load_interactions
from rectest.data.interactions import Interactions, Split
from rectest.data.movielens import load_ml100k_fold, load_movielens
from rectest.data.releases import RELEASES, get_release
from rectest.data.splits import make_split
from rectest.data.synthetic import SyntheticWorld, make_world, sample_log, sphere

__all__ = [
    "RELEASES",
    "DataBundle",
    "Interactions",
    "Split",
    "SyntheticWorld",
    "get_release",
    "load_embeddings",
    "load_interactions",
    "load_ml100k_fold",
    "load_movielens",
    "make_split",
    "make_world",
    "sample_log",
    "sphere",
]
