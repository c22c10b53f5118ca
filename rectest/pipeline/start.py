"""The simulation's starting point: which users and creators, and their vectors.

From the data option and (when one was trained) the recommender's exported vectors: choose the creators
(the n most-rated items, a random n or all) and the users (all, or a random m), take the true or the
learned vectors, put them on the sphere once, and apply ``sim.transform``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rectest.data.bundle import DataBundle
from rectest.data.interactions import most_rated
from rectest.errors import ConfigError, DataError
from rectest.pipeline.spec import CreatorChoice, SimSpec, Transform
from rectest.sim.geometry import iid_reference, start_geometry, top_overlap, transform_start


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


def from_embeddings(bundle: DataBundle, sim: SimSpec, seed: int) -> Start:
    """Bring-your-own embeddings: the first ``sim.n_users`` users and the chosen creators."""
    users, creators = bundle.embeddings
    creator_idx = choose_creators(sim.creators, None, creators.shape[0], sim.n_creators, seed)
    m = users.shape[0] if sim.n_users is None else min(sim.n_users, users.shape[0])
    users, creators = _transform(_unit(users[:m]), _unit(creators[creator_idx]), sim.transform)
    return Start(users, creators, None, None, np.arange(m), creator_idx)


def from_vectors(
    bundle: DataBundle, sim: SimSpec, seed: int, user_vecs: np.ndarray, item_vecs: np.ndarray, metrics: dict
) -> Start:
    """The start from a recommender's (or the synthetic world's) vectors of every user and item.

    Args:
        bundle: the loaded data (its interactions choose the creators; its world gives ``sim.init=truth``).
        sim: the simulation settings.
        seed: seeds the random choices of users and creators.
        user_vecs: ``(num_users, d)`` the recommender's user vectors.
        item_vecs: ``(num_items, d)`` its item vectors.
        metrics: the recommender's test metrics.
    """
    inter = bundle.interactions
    creator_idx = choose_creators(sim.creators, inter, inter.num_items, sim.n_creators, seed)
    user_idx = _sample_users(inter.num_users, sim.n_users, seed)
    model_users, model_creators = _unit(user_vecs[user_idx]), _unit(item_vecs[creator_idx])
    if sim.init == "truth":
        users, creators = _unit(bundle.world.users[user_idx]), _unit(bundle.world.creators[creator_idx])
    else:
        users, creators = model_users, model_creators
    users, creators = _transform(users, creators, sim.transform)
    return Start(
        users=users,
        creators=creators,
        model_users=model_users,
        model_creators=model_creators,
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


def choose_creators(
    kind: CreatorChoice, ratings, num_items: int, n_creators: int | None, seed: int
) -> np.ndarray:
    """Indices of the items that become creators.

    ``most_rated``: the n most-rated items (ties broken by index), in descending count order (without
    rating counts, as for bring-your-own embeddings, the first n rows); ``random``: n items drawn without
    replacement (seeded by ``seed``), in index order; ``all``: every item (``sim.n_creators`` ignored).
    """
    kind = CreatorChoice(kind)
    n = num_items if n_creators is None or kind is CreatorChoice.all else min(int(n_creators), num_items)
    if kind is CreatorChoice.all or n == num_items and kind is CreatorChoice.random:
        return np.arange(num_items)
    if kind is CreatorChoice.random:
        return np.sort(np.random.default_rng(seed).choice(num_items, size=n, replace=False))
    if ratings is None:  # bring-your-own embeddings: no rating counts
        return np.arange(n)
    return most_rated(ratings, n)


def _transform(users: np.ndarray, creators: np.ndarray, kind: Transform) -> tuple[np.ndarray, np.ndarray]:
    """``sim.transform`` applied to the starting vectors (see :func:`rectest.sim.geometry.transform_start`)."""
    try:
        u, c = transform_start(torch.from_numpy(users), torch.from_numpy(creators), kind.value)
    except ValueError as err:
        raise ConfigError(f"sim.{err}") from None
    return u.numpy(), c.numpy()


def geometry(start: Start, sim: SimSpec) -> dict:
    """The ``geometry`` block of summary.json: the starting state next to i.i.d. uniform vectors."""
    users, creators = torch.from_numpy(start.users), torch.from_numpy(start.creators)
    (m, d), n = users.shape, creators.shape[0]
    geometry = {
        "transform": str(sim.transform),
        "creators": str(sim.creators),
        "m": m,
        "n": n,
        "d": d,
        "start": start_geometry(users, creators),
        "iid": iid_reference(m, n, d),
    }
    if sim.transform is not Transform.none and start.model_users is not None:
        geometry["model_top10_kept"] = top_overlap(
            torch.from_numpy(start.model_users), torch.from_numpy(start.model_creators), users, creators
        )
    return geometry


def _sample_users(num_users: int, n_users: int | None, seed: int) -> np.ndarray:
    if n_users is None or n_users >= num_users:
        return np.arange(num_users)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_users, size=n_users, replace=False))
