"""Load any MovieLens release from its GroupLens zip or extracted folder, with a parquet cache.

The root folder defaults to ``$RECTEST_DATA`` (else ``data``). For a release ``ml-1m`` the loader
looks, in order, at ``<root>/ml-1m/`` (extracted), ``<root>/<zip folder>/`` (``ml-10M100K`` for
ml-10m), ``<root>`` itself when it already holds the ratings file, then ``<root>/ml-1m.zip`` (read in
place, never extracted).
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rectest.data.cache import CACHE_FOLDER, cache_path, cached
from rectest.data.indexing import from_table, lookup
from rectest.data.interactions import Interactions, Split, deduplicate
from rectest.data.parsers import ITEM, USER, read_ratings, read_titles
from rectest.data.releases import ML100K_FOLDS, Release, get_release
from rectest.errors import ConfigError, DataError

log = logging.getLogger(__name__)
DATA_ENV = "RECTEST_DATA"
CACHE_ENV = "RECTEST_CACHE"  # overrides the cache folder (default <root>/.cache)
DEFAULT_ROOT = "data"
CACHE_MIN_BYTES = 16 << 20  # with cache=None, sources smaller than this parse faster than any cache pays


def data_root(root: str | Path | None) -> Path:
    """The data folder: ``root``, else ``$RECTEST_DATA``, else ``data``."""
    return Path(root if root is not None else os.environ.get(DATA_ENV, DEFAULT_ROOT)).expanduser()


@dataclass(frozen=True)
class ReleaseFiles:
    """Where one release's files are: an extracted folder or a zip read in place.

    Attributes:
        release: the release.
        folder: the folder holding the files, or None when reading ``archive``.
        archive: the zip, or None when reading ``folder``.
    """

    release: Release
    folder: Path | None = None
    archive: Path | None = None

    def describe(self, name: str) -> str:
        """A path for messages: ``data/ml-1m/ratings.dat`` or ``data/ml-1m.zip:ml-1m/ratings.dat``."""
        if self.folder is not None:
            return str(self.folder / name)
        return f"{self.archive}:{self.release.folder}/{name}"

    def stamp(self, name: str) -> Path:
        """The file whose size and mtime key the cache of ``name``."""
        return self.folder / name if self.folder is not None else self.archive  # type: ignore[return-value]

    def exists(self, name: str) -> bool:
        if self.folder is not None:
            return (self.folder / name).is_file()
        with _open_zip(self.archive) as zf:  # type: ignore[arg-type]
            return f"{self.release.folder}/{name}" in zf.namelist()

    def source(self, name: str) -> Path | bytes:
        """The file as a path (folder) or its bytes (zip member, CRC-checked)."""
        if self.folder is not None:
            path = self.folder / name
            if not path.is_file():
                raise DataError(f"{path}: file not found; the {self.release.name} folder is incomplete")
            return path
        member = f"{self.release.folder}/{name}"
        with _open_zip(self.archive) as zf:  # type: ignore[arg-type]
            try:
                return zf.read(member)
            except KeyError:
                raise DataError(
                    f"{self.archive}: has no member {member!r}; is it the {self.release.name} zip?"
                ) from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise DataError(f"{self.archive}: member {member!r} is corrupt ({err})") from None

    def read_bytes(self, name: str) -> bytes:
        src = self.source(name)
        return src.read_bytes() if isinstance(src, Path) else src


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(
            f"{path}: not a readable zip archive ({err}); the download may be truncated"
        ) from None


def locate(release: Release, root: Path) -> ReleaseFiles | None:
    """Find ``release`` under ``root`` (see the module docstring for the order); None when absent."""
    for folder in (root / release.name, root / release.folder, root):
        if (folder / release.ratings_file).is_file():
            return ReleaseFiles(release, folder=folder)
    archive = root / release.archive
    if archive.is_file():
        return ReleaseFiles(release, archive=archive)
    return None


def find_release(name: str, root: str | Path | None = None, download: bool = False) -> ReleaseFiles:
    """Locate a release's files, downloading the verified zip first when ``download`` is set.

    Raises:
        DataError: unknown release, or not found (the message says where it looked and how to fetch).
    """
    release = get_release(name)
    base = data_root(root)
    files = locate(release, base) if base.is_dir() else None
    if files is None and download:
        from rectest.data.download import fetch

        fetch(release, base)
        files = locate(release, base)
    if files is None:
        where = f"{base / release.name / release.ratings_file} or {base / release.archive}"
        hint = f"run `python -m rectest.data fetch {name} --root {base}` or place the GroupLens zip there"
        missing = "" if base.is_dir() else f" (folder {base} does not exist)"
        raise DataError(f"MovieLens {name} not found: looked for {where}{missing}; {hint}")
    return files


def _titles(files: ReleaseFiles) -> dict[int, str] | None:
    rel = files.release
    if not files.exists(rel.movies_file):
        log.warning("%s not found; items have no titles", files.describe(rel.movies_file))
        return None
    raw = files.read_bytes(rel.movies_file)
    return read_titles(raw, rel.movies_format, rel.movies_encoding, files.describe(rel.movies_file))


def _ratings(files: ReleaseFiles, name: str, cache: bool | None, cache_dir: str | Path | None):
    """Parsed ratings table of file ``name``, through the parquet cache when it is on."""
    rel = files.release
    stamp = files.stamp(name)
    if cache is None:
        cache = stamp.stat().st_size >= CACHE_MIN_BYTES
    path = None
    if cache:
        folder = Path(cache_dir or os.environ.get(CACHE_ENV) or data_root_of(files) / CACHE_FOLDER)
        path = cache_path(folder, f"{rel.name}-{name}", stamp)
    return cached(path, lambda: read_ratings(files.source(name), rel.ratings_format, files.describe(name)))


def data_root_of(files: ReleaseFiles) -> Path:
    """The data root a release was found under."""
    if files.archive is not None:
        return files.archive.parent
    folder = files.folder
    return folder.parent if folder.name in (files.release.name, files.release.folder) else folder  # type: ignore[union-attr]


def load_movielens(
    release: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    cache: bool | None = None,
    cache_dir: str | Path | None = None,
) -> Interactions:
    """Load every rating of a MovieLens release.

    Args:
        release: ``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``, ``ml-25m`` or ``ml-latest-small``.
        root: data folder holding the zip or extracted folder (default ``$RECTEST_DATA`` or ``data``).
        download: fetch the checksum-verified zip when the release is not found.
        cache: keep the parsed ratings as parquet for fast reloads; None (default) caches sources of
            at least ``CACHE_MIN_BYTES`` (ml-1m and larger), True always, False never.
        cache_dir: where the cache goes (default ``$RECTEST_CACHE``, else ``<root>/.cache``).

    Returns:
        Interactions with contiguous indices; ``user_ids``/``item_ids`` hold the original ids sorted
        ascending; ``item_titles`` the decoded titles (Latin-1 where the release uses it).

    Raises:
        DataError: unknown release, missing files, malformed or corrupt data.
    """
    files = find_release(release, root, download)
    titles = _titles(files)  # first: a bad movies file fails before any cache is written
    table = _ratings(files, files.release.ratings_file, cache, cache_dir)
    return deduplicate(from_table(table, release, titles))


def _fold_part(
    files: ReleaseFiles, name: str, full: Interactions, cache: bool | None, cache_dir: str | Path | None
) -> Interactions:
    table = _ratings(files, name, cache, cache_dir)
    user = lookup(table.column(USER).to_numpy(), full.user_ids)
    item = lookup(table.column(ITEM).to_numpy(), full.item_ids)
    if (user < 0).any() or (item < 0).any():
        raise DataError(f"{files.describe(name)}: holds user or item ids that are not in u.data")
    rows = from_table(table, full.name)
    return deduplicate(
        Interactions(
            user, item, rows.rating, rows.timestamp, full.user_ids, full.item_ids, full.item_titles, full.name
        )
    )


def load_ml100k_fold(
    fold: str,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    cache: bool | None = None,
    cache_dir: str | Path | None = None,
) -> Split:
    """One of ml-100k's predefined splits, with id maps from the full ``u.data``.

    Args:
        fold: ``u1``..``u5``, ``ua`` or ``ub``.
        root: data folder (as in :func:`load_movielens`).
        val_fraction: share of ``<fold>.base`` rows moved, at random, to validation.
        seed: seeds the validation draw.

    Returns:
        Split with test = ``<fold>.test``, val = a random ``val_fraction`` of ``<fold>.base``, train = the rest;
        indices agree across folds.
    """
    if fold not in ML100K_FOLDS:
        raise ConfigError(f"ml-100k fold {fold!r} is unknown; expected one of {', '.join(ML100K_FOLDS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1)")
    files = find_release("ml-100k", root)
    titles = _titles(files)
    full = from_table(_ratings(files, files.release.ratings_file, cache, cache_dir), "ml-100k", titles)
    base = _fold_part(files, f"{fold}.base", full, cache, cache_dir)
    test = _fold_part(files, f"{fold}.test", full, cache, cache_dir)
    order = np.random.default_rng(seed).permutation(len(base))  # (N_base,) random order
    is_val = np.zeros(len(base), dtype=bool)
    is_val[order[: int(round(val_fraction * len(base)))]] = True
    return Split(train=base.take(~is_val), val=base.take(is_val), test=test)
