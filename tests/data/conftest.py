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
SHARED_ENV = "RECTEST_SHARED_DATA"


def make_zip(release: str, target: Path) -> Path:
    """Zip the fixture folder of ``release`` in GroupLens layout (``<zip folder>/<file>``) at ``target/<release>.zip``."""
    rel = RELEASES[release]
    archive = target / rel.archive
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{rel.folder}/", "")
        for path in sorted((FIXTURES / rel.folder).iterdir()):
            zf.write(path, f"{rel.folder}/{path.name}")
    return archive


@pytest.fixture
def fixture_root(tmp_path: Path) -> Path:
    """A writable copy of the fixture data root (extracted layout for every release)."""
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    return root


@pytest.fixture
def shared_movielens() -> Path:
    """The real MovieLens copies (ml-100k, ml-latest-small); skip when absent."""
    root = Path(os.environ.get(SHARED_ENV, REPO.parent / "shared" / "data" / "movielens"))
    if not (root / "ml-100k" / "u.data").is_file():
        pytest.skip(f"real MovieLens copies not found under {root} (set {SHARED_ENV})")
    return root
