"""MovieLens loaders on tiny fixtures in each release's exact format, from folders and from zips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rectest.data import load_ml100k_fold, load_movielens
from rectest.data.cache import CACHE_FOLDER
from rectest.data.releases import ML100K_FOLDS, RELEASES
from tests.data.conftest import fixture_file, make_zip

# What each fixture holds: (original (user, item, rating, timestamp) rows, {item id: title}).
EXPECTED_TITLES = {
    "ml-100k": {3: "Misérables, Les (1995)", 5: "Cité des enfants perdus, La (1995)", 7: "Kolya (1996)"},
    "ml-1m": {3408: "Erin Brockovich: Café (2000)", 1193: "One Flew Over the Cuckoo's Nest (1975)"},
    "ml-10m": {185: "Net, The (1995)"},
    "ml-20m": {29: "City of Lost Children, The (Cité des enfants perdus, La) (1995)"},
    "ml-25m": {29: "City of Lost Children, The (Cité des enfants perdus, La) (1995)"},
    "ml-latest-small": {2: "Jumanji (1995)"},
}


def _raw_rows(release: str) -> list[tuple[int, int, float, int]]:
    """Parse the fixture's ratings file by hand (an independent reference)."""
    rel = RELEASES[release]
    text = fixture_file(rel.folder, rel.ratings_file).read_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if rel.ratings_format == "csv":
        lines = lines[1:]
    sep = {"tab": "\t", "dcolon": "::", "csv": ","}[rel.ratings_format]
    return [(int(u), int(i), float(r), int(t)) for u, i, r, t in (ln.split(sep) for ln in lines)]


def _as_rows(log) -> list[tuple[int, int, float, int]]:
    return [
        (int(log.user_ids[u]), int(log.item_ids[i]), float(r), int(t))
        for u, i, r, t in zip(log.user, log.item, log.rating, log.timestamp, strict=True)
    ]


@pytest.mark.parametrize("release", list(RELEASES))
@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_release_round_trips_every_rating(
    release: str, layout: str, fixture_root: Path, tmp_path: Path
) -> None:
    root = fixture_root
    if layout == "zip":
        root = tmp_path / "zips"
        root.mkdir()
        make_zip(release, root)
    log = load_movielens(release, root, cache=False)
    assert sorted(_as_rows(log)) == sorted(_raw_rows(release))
    # contiguous indices, id maps sorted ascending and holding exactly the ids seen
    rows = _raw_rows(release)
    assert log.user_ids.tolist() == sorted({r[0] for r in rows})
    assert log.item_ids.tolist() == sorted({r[1] for r in rows})
    assert set(log.user.tolist()) == set(range(log.num_users))
    assert set(log.item.tolist()) == set(range(log.num_items))
    assert log.rating.dtype == np.float32 and log.user.dtype == np.int64 and log.timestamp.dtype == np.int64
    titles = dict(zip(log.item_ids.tolist(), log.item_titles.tolist(), strict=True))
    for item, title in EXPECTED_TITLES[release].items():
        assert titles[item] == title


def test_half_stars_survive(fixture_root: Path) -> None:
    log = load_movielens("ml-10m", fixture_root, cache=False)
    assert sorted(set(log.rating.tolist())) == [0.5, 2.0, 3.5, 4.5, 5.0]


def test_unrated_movies_are_not_items(fixture_root: Path) -> None:
    log = load_movielens("ml-1m", fixture_root, cache=False)
    assert 9999 not in log.item_ids.tolist()  # listed in movies.dat, never rated


def test_root_defaults_to_env(fixture_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECTEST_DATA", str(fixture_root))
    assert len(load_movielens("ml-1m", cache=False)) == 6


def test_root_may_be_the_release_folder_itself(fixture_root: Path) -> None:
    assert len(load_movielens("ml-100k", fixture_root / "ml-100k", cache=False)) == 12


def test_fold_matches_files_and_shares_id_maps(fixture_root: Path) -> None:
    full = load_movielens("ml-100k", fixture_root, cache=False)
    split = load_ml100k_fold("u1", fixture_root, val_fraction=0.25, seed=3, cache=False)
    for part in (split.train, split.val, split.test):
        assert part.user_ids.tolist() == full.user_ids.tolist()
        assert part.item_ids.tolist() == full.item_ids.tolist()
    base = {r[:2] for r in _rows_of(fixture_root / "ml-100k" / "u1.base")}
    test = {r[:2] for r in _rows_of(fixture_root / "ml-100k" / "u1.test")}
    got_test = {r[:2] for r in _as_rows(split.test)}
    got_base = {r[:2] for r in _as_rows(split.train) + _as_rows(split.val)}
    assert got_test == test and got_base == base
    assert len(split.val) == round(0.25 * len(base))
    again = load_ml100k_fold("u1", fixture_root, val_fraction=0.25, seed=3, cache=False)
    assert _as_rows(again.val) == _as_rows(split.val)


def _rows_of(path: Path) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in ln.split("\t")[:2]) for ln in path.read_text().splitlines()]


def test_fold_names() -> None:
    assert ML100K_FOLDS == ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


class TestCache:
    def test_second_load_reads_cache_and_agrees(self, fixture_root: Path, tmp_path: Path) -> None:
        cache = tmp_path / "cache"
        first = load_movielens("ml-20m", fixture_root, cache=True, cache_dir=cache)
        files = list(cache.iterdir())
        assert len(files) == 1 and files[0].suffix == ".parquet"
        second = load_movielens("ml-20m", fixture_root, cache=True, cache_dir=cache)
        assert _as_rows(first) == _as_rows(second)

    def test_cache_is_used_instead_of_source(self, fixture_root: Path, tmp_path: Path) -> None:
        cache = tmp_path / "cache"
        load_movielens("ml-1m", fixture_root, cache=True, cache_dir=cache)
        src = fixture_root / "ml-1m" / "ratings.dat"
        stat = src.stat()
        data = bytearray(src.read_bytes())
        data[0:1] = b"X"  # same size, same mtime -> same key; a parse would now fail
        src.write_bytes(bytes(data))
        os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert len(load_movielens("ml-1m", fixture_root, cache=True, cache_dir=cache)) == 6

    def test_changed_source_invalidates_cache(self, fixture_root: Path, tmp_path: Path) -> None:
        cache = tmp_path / "cache"
        load_movielens("ml-1m", fixture_root, cache=True, cache_dir=cache)
        src = fixture_root / "ml-1m" / "ratings.dat"
        src.write_text(src.read_text() + "11::661::2::978303000\n")
        assert len(load_movielens("ml-1m", fixture_root, cache=True, cache_dir=cache)) == 7

    def test_corrupt_cache_is_rebuilt(self, fixture_root: Path, tmp_path: Path) -> None:
        cache = tmp_path / "cache"
        good = load_movielens("ml-1m", fixture_root, cache=True, cache_dir=cache)
        (path,) = cache.iterdir()
        path.write_bytes(path.read_bytes()[:40])  # truncated parquet
        again = load_movielens("ml-1m", fixture_root, cache=True, cache_dir=cache)
        assert _as_rows(again) == _as_rows(good)
        (rebuilt,) = cache.iterdir()
        assert rebuilt.stat().st_size > 40

    def test_default_cache_folder_and_no_temp_files(self, fixture_root: Path) -> None:
        load_movielens("ml-1m", fixture_root, cache=True)
        names = [p.name for p in (fixture_root / CACHE_FOLDER).iterdir()]
        assert len(names) == 1 and names[0].startswith("ml-1m-") and names[0].endswith(".parquet")

    def test_small_sources_are_not_cached_by_default(self, fixture_root: Path) -> None:
        load_movielens("ml-1m", fixture_root)
        assert not (fixture_root / CACHE_FOLDER).exists()

    def test_env_overrides_cache_folder(self, fixture_root: Path, tmp_path: Path, monkeypatch) -> None:
        monkeypatch.setenv("RECTEST_CACHE", str(tmp_path / "elsewhere"))
        load_movielens("ml-1m", fixture_root, cache=True)
        assert len(list((tmp_path / "elsewhere").iterdir())) == 1

    def test_unwritable_cache_folder_still_loads(self, fixture_root: Path, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        assert len(load_movielens("ml-1m", fixture_root, cache=True, cache_dir=blocker / "cache")) == 6
