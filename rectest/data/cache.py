"""Parquet cache of parsed ratings, keyed by the source file's path, size and modification time.

A cache file is written to a temporary name and moved into place with ``os.replace``, so a killed run
never leaves a half-written cache. A cache that cannot be read (truncated, wrong schema) is deleted
and rebuilt. A folder that cannot be written (read-only data) just means no cache.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rectest.data.parsers import RATING_SCHEMA
from rectest.files import atomic_write

log = logging.getLogger(__name__)
CACHE_FOLDER = ".cache"
_FORMAT_VERSION = "1"  # bump when the parsed table changes meaning


def cache_path(cache_dir: Path, release: str, source: Path) -> Path:
    """``<cache_dir>/<release>-<hash of source path, size, mtime>.parquet``."""
    stat = source.stat()
    key = f"{_FORMAT_VERSION}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"{release}-{digest}.parquet"


def _read(path: Path) -> pa.Table | None:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        log.warning("cache %s is unreadable (%s); rebuilding it", path, err)
        return None
    if not table.schema.equals(RATING_SCHEMA):
        log.warning("cache %s has an unexpected schema; rebuilding it", path)
        return None
    return table


def write_atomic(table: pa.Table, path: Path) -> bool:
    """Write ``table`` to ``path`` atomically (:func:`rectest.files.atomic_write`); False when not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # zstd: the smallest; codecs differ by < 1 s at 20M rows (bench_data.py)
        atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))
        return True
    except OSError as err:
        log.warning("could not write cache %s (%s); continuing without it", path, err)
        return False


def cached(path: Path | None, build: Callable[[], pa.Table]) -> pa.Table:
    """Return the table cached at ``path``, or ``build()`` it and cache it (``path=None``: no cache)."""
    if path is None:
        return build()
    if path.exists():
        table = _read(path)
        if table is not None:
            return table
        path.unlink(missing_ok=True)
    table = build()
    write_atomic(table, path)
    return table
