"""Synthetic worlds: true user and creator vectors on the unit sphere, and rating logs drawn from them.

Lets recommenders be trained and the simulation be run with no files (paper defaults d=10, n=50
creators, m=100 users).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rectest.data.interactions import Interactions
from rectest.errors import ConfigError


def sphere(count: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` i.i.d. vectors uniform on the unit sphere in R^d (normalised Gaussians).

    Returns:
        (count, d) float64 array of unit rows.
    """
    x = rng.standard_normal((count, d))  # (count, d)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    while (norm == 0).any():  # probability zero; redraw rather than divide by zero
        zero = norm[:, 0] == 0
        x[zero] = rng.standard_normal((int(zero.sum()), d))
        norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / norm


@dataclass(frozen=True)
class SyntheticWorld:
    """True preferences of a synthetic world.

    Attributes:
        users: (m, d) unit user vectors.
        creators: (n, d) unit creator vectors (the items).
    """

    users: np.ndarray
    creators: np.ndarray

    @property
    def d(self) -> int:
        return int(self.users.shape[1])


def make_world(n_users: int = 100, n_creators: int = 50, d: int = 10, seed: int = 0) -> SyntheticWorld:
    """Draw a world of ``n_users`` users and ``n_creators`` creators uniform on the sphere in R^d."""
    for label, value in (("n_users", n_users), ("n_creators", n_creators), ("d", d)):
        if value < 1:
            raise ConfigError(f"{label}={value} must be a positive integer")
    rng = np.random.default_rng(seed)
    users = sphere(n_users, d, rng)
    creators = sphere(n_creators, d, rng)
    return SyntheticWorld(users=users, creators=creators)


def sample_log(world: SyntheticWorld, ratings_per_user: int, noise: float, seed: int = 0) -> Interactions:
    """Each user rates ``ratings_per_user`` distinct random creators; rating = <u, v> + N(0, noise^2).

    Timestamps give the order in which the ratings happened (a random interleaving), so temporal
    splits work too.

    Returns:
        Interactions with N = m * ratings_per_user rows; ids are the indices (0..m-1, 0..n-1).
    """
    m, n = world.users.shape[0], world.creators.shape[0]
    if not 1 <= ratings_per_user < n:
        raise ConfigError(f"ratings_per_user={ratings_per_user} must be in [1, n_creators={n})")
    if not noise >= 0:
        raise ConfigError(f"noise={noise} must be >= 0")
    rng = np.random.default_rng(seed)
    item = np.argsort(rng.random((m, n)), axis=1)[:, :ratings_per_user].reshape(
        -1
    )  # (m * k,) distinct per user
    user = np.repeat(np.arange(m, dtype=np.int64), ratings_per_user)  # (m * k,)
    score = np.einsum("nd,nd->n", world.users[user], world.creators[item])  # (m * k,) true affinity
    rating = score + noise * rng.standard_normal(len(user))
    timestamp = rng.permutation(len(user)).astype(np.int64)
    return Interactions(
        user=user,
        item=item.astype(np.int64),
        rating=rating.astype(np.float32),
        timestamp=timestamp,
        user_ids=np.arange(m, dtype=np.int64),
        item_ids=np.arange(n, dtype=np.int64),
        item_titles=None,
        name="synthetic",
    )
