"""Factories behind ``conf/data/*.yaml`` (Hydra ``_target_``s): each returns a :class:`DataBundle`."""

from __future__ import annotations

from rectest.data.bundle import DataBundle
from rectest.data.embeddings import load_embeddings
from rectest.data.generic import load_interactions
from rectest.data.interactions import Interactions, Split
from rectest.data.movielens import load_ml100k_fold, load_movielens
from rectest.data.releases import ML100K_FOLDS
from rectest.data.splits import METHODS, make_split
from rectest.data.synthetic import make_world, sample_log
from rectest.errors import ConfigError


def _check_split(split: str, name: str) -> None:
    """Refuse a split name the dataset does not have, naming the ones it has (before any loading)."""
    allowed = (*ML100K_FOLDS, *METHODS) if name == "ml-100k" else METHODS
    if split not in allowed:
        fold = " is an ml-100k fold;" if split in ML100K_FOLDS else ":"
        raise ConfigError(f"data.split={split!r}{fold} {name} supports {', '.join(allowed)}")


def _split(
    log: Interactions,
    split: str,
    val_fraction: float,
    test_fraction: float,
    leave_last: int | None,
    seed: int,
) -> Split:
    if split in ML100K_FOLDS:
        raise ConfigError(
            f"data.split={split!r} is an ml-100k fold; {log.name} supports random, temporal, global_time"
        )
    return make_split(log, split, val_fraction, test_fraction, leave_last, seed)


def synthetic(
    n_users: int = 100,
    n_creators: int = 50,
    d: int = 10,
    ratings_per_user: int = 40,
    noise: float = 0.1,
    split: str = "random",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DataBundle:
    """A synthetic world (true vectors) and a noisy rating log drawn from it."""
    _check_split(split, "synthetic")
    world = make_world(n_users, n_creators, d, seed)
    log = sample_log(world, ratings_per_user, noise, seed + 1)
    parts = _split(log, split, val_fraction, test_fraction, None, seed)
    return DataBundle(name="synthetic", interactions=log, split=parts, world=world)


def movielens(
    release: str,
    path: str | None = None,
    split: str = "random",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    leave_last: int | None = None,
    download: bool = False,
    seed: int = 0,
) -> DataBundle:
    """A MovieLens release from ``path`` (the data root); ml-100k also accepts its folds u1..u5, ua, ub."""
    _check_split(split, release)
    log = load_movielens(release, path, download=download)
    if split in ML100K_FOLDS:
        if release != "ml-100k":
            raise ConfigError(
                f"data.split={split!r} is an ml-100k fold; {release} supports random, temporal, global_time"
            )
        parts = load_ml100k_fold(split, path, val_fraction, seed)
    else:
        parts = _split(log, split, val_fraction, test_fraction, leave_last, seed)
    return DataBundle(name=release, interactions=log, split=parts)


def interactions_file(
    path: str,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str = "rating",
    timestamp_col: str | None = None,
    sep: str = ",",
    split: str = "random",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    leave_last: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Any CSV or parquet log of ratings (``data=csv``)."""
    if path in (None, "", "???"):
        raise ConfigError("data=csv needs data.path=FILE (a CSV or parquet file of ratings)")
    _check_split(split, "data=csv")
    log = load_interactions(path, user_col, item_col, rating_col, timestamp_col, sep)
    return DataBundle(
        name="csv", interactions=log, split=_split(log, split, val_fraction, test_fraction, leave_last, seed)
    )


def embeddings(path: str) -> DataBundle:
    """User and creator vectors from an ``.npz`` (``data=embeddings``), for the oracle recommender."""
    if path in (None, "", "???"):
        raise ConfigError("data=embeddings needs data.path=FILE.npz (arrays 'users' and 'creators')")
    return DataBundle(name="embeddings", interactions=None, split=None, embeddings=load_embeddings(path))
