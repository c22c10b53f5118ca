"""Synthetic worlds: uniform unit vectors and rating logs with the stated noise."""

from __future__ import annotations

import numpy as np
import pytest

from rectest.data import make_world, sample_log, sphere
from rectest.errors import ConfigError


def test_sphere_rows_are_unit() -> None:
    x = sphere(500, 7, np.random.default_rng(0))
    assert x.shape == (500, 7)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-12)


def test_sphere_is_uniform_statistically() -> None:
    # Uniform on S^{d-1}: E[x] = 0, E[x x^T] = I/d; each check at ~5 standard errors.
    n, d = 20_000, 5
    x = sphere(n, d, np.random.default_rng(1))
    assert np.abs(x.mean(axis=0)).max() < 5 * np.sqrt(1 / d / n)
    second = x.T @ x / n
    assert np.abs(second - np.eye(d) / d).max() < 5 * np.sqrt(2 / d**2 / n) + 1e-3
    # the first coordinate of a uniform point on S^2 (d=3) is uniform on [-1, 1] (Archimedes)
    z = sphere(n, 3, np.random.default_rng(2))[:, 0]
    counts, _ = np.histogram(z, bins=10, range=(-1, 1))
    assert np.abs(counts - n / 10).max() < 5 * np.sqrt(n / 10)


def test_world_defaults_and_seed() -> None:
    world = make_world()
    assert world.users.shape == (100, 10) and world.creators.shape == (50, 10) and world.d == 10
    again = make_world(seed=0)
    np.testing.assert_array_equal(world.users, again.users)
    assert not np.array_equal(world.users, make_world(seed=1).users)


def test_log_structure() -> None:
    world = make_world(n_users=30, n_creators=20, d=4, seed=3)
    log = sample_log(world, ratings_per_user=7, noise=0.1, seed=4)
    assert len(log) == 30 * 7 and log.num_users == 30 and log.num_items == 20
    for u in range(30):
        items = log.item[log.user == u]
        assert len(items) == 7 and len(set(items.tolist())) == 7  # distinct items per user
    assert sorted(log.timestamp.tolist()) == list(range(len(log)))


def test_noiseless_ratings_are_inner_products() -> None:
    world = make_world(n_users=10, n_creators=12, d=3, seed=5)
    log = sample_log(world, 5, noise=0.0, seed=6)
    expected = (world.users[log.user] * world.creators[log.item]).sum(axis=1)
    np.testing.assert_allclose(log.rating, expected, atol=1e-6)


def test_noise_has_the_stated_std() -> None:
    world = make_world(n_users=400, n_creators=50, d=10, seed=7)
    log = sample_log(world, 40, noise=0.3, seed=8)
    residual = log.rating - (world.users[log.user] * world.creators[log.item]).sum(axis=1)
    n = len(residual)
    assert abs(residual.mean()) < 5 * 0.3 / np.sqrt(n)
    assert abs(residual.std() - 0.3) < 5 * 0.3 / np.sqrt(2 * n)


@pytest.mark.parametrize("kw", [{"ratings_per_user": 50}, {"ratings_per_user": 0}, {"noise": -1.0}])
def test_bad_arguments(kw: dict) -> None:
    args = {"ratings_per_user": 10, "noise": 0.1} | kw
    with pytest.raises(ConfigError):
        sample_log(make_world(), **args)
