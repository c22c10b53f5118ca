"""Shared fixtures for the data tests: tiny MovieLens-format folders, zips built on the fly, real data."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from rectest.data.releases import RELEASES

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "movielens"
SUFFIX = ".fixture"  # committed as `u.data.fixture` etc.: hand-written tiny files, never real MovieLens data
SHARED_ENV = "RECTEST_SHARED_DATA"


def fixture_file(folder: str, name: str) -> Path:
    """The committed fixture for ``<folder>/<name>`` (a release's file name)."""
    return FIXTURES / folder / f"{name}{SUFFIX}"


def _materialise(target: Path) -> Path:
    """Copy the fixtures to ``target`` under their release file names (the suffix dropped)."""
    for path in FIXTURES.rglob(f"*{SUFFIX}"):
        dest = target / path.relative_to(FIXTURES).with_suffix("")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    return target


def make_zip(release: str, target: Path) -> Path:
    """Zip the fixture folder of ``release`` in GroupLens layout (``<zip folder>/<file>``) at ``target/<release>.zip``."""
    rel = RELEASES[release]
    archive = target / rel.archive
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{rel.folder}/", "")
        for path in sorted((FIXTURES / rel.folder).glob(f"*{SUFFIX}")):
            zf.write(path, f"{rel.folder}/{path.name.removesuffix(SUFFIX)}")
    return archive


@pytest.fixture
def fixture_root(tmp_path: Path) -> Path:
    """A writable copy of the fixture data root (extracted layout for every release)."""
    return _materialise(tmp_path / "data")


@pytest.fixture
def shared_movielens() -> Path:
    """The real MovieLens copies (ml-100k, ml-latest-small); skip when absent."""
    root = Path(os.environ.get(SHARED_ENV, REPO.parent / "shared" / "data" / "movielens"))
    if not (root / "ml-100k" / "u.data").is_file():
        pytest.skip(f"real MovieLens copies not found under {root} (set {SHARED_ENV})")
    return root
