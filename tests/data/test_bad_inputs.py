"""A corpus of malformed inputs: every one raises DataError naming the file and the problem.

Each case builds its bad input under a fresh data root and returns (call, file fragment, problem regex).
The MovieLens cases load with the cache on and then check that no cache or temporary file was left.
"""

from __future__ import annotations

import dataclasses
import re
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rectest.data import load_embeddings, load_interactions, load_ml100k_fold, load_movielens
from rectest.data.download import extract_archive, verify_archive
from rectest.data.releases import RELEASES
from rectest.errors import DataError
from tests.data.conftest import REPO, make_zip

Case = Callable[[Path], tuple[Callable[[], object], str, str]]


def _ml(release: str, file: str, content: bytes | str) -> Case:
    """Overwrite one file of the fixture copy of ``release`` and load it."""

    def build(root: Path):
        path = root / RELEASES[release].folder / file
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return (lambda: load_movielens(release, root, cache=True, cache_dir=root / "cache")), file, ""

    return build


def _expect(case: Case, problem: str) -> Case:
    def build(root: Path):
        call, fragment, _ = case(root)
        return call, fragment, problem

    return build


def _zip_bytes(transform: Callable[[bytes], bytes], name: str = "ml-1m.zip") -> Case:
    def build(root: Path):
        archive = make_zip("ml-1m", root.parent)
        (root / "ml-1m").rename(root.parent / "moved-away")  # only the zip is left to read
        (root / name).write_bytes(transform(archive.read_bytes()))
        return (lambda: load_movielens("ml-1m", root, cache=True, cache_dir=root / "cache")), name, ""

    return build


def _zip_wrong_layout(root: Path):
    (root / "ml-1m").rename(root.parent / "moved-away")
    with zipfile.ZipFile(root / "ml-1m.zip", "w") as zf:
        zf.writestr("ratings.dat", "1::2::3::4\n")  # no ml-1m/ folder
    return (lambda: load_movielens("ml-1m", root, cache=False)), "ml-1m.zip", "no member 'ml-1m/ratings.dat'"


def _unknown_release(root: Path):
    return (lambda: load_movielens("ml-2m", root)), "ml-2m", "unknown MovieLens release"


def _missing_root(root: Path):
    return (lambda: load_movielens("ml-1m", root / "nowhere")), "nowhere", "does not exist"


def _release_absent(root: Path):
    (root / "ml-1m").rename(root.parent / "moved-away")
    return (lambda: load_movielens("ml-1m", root)), "ml-1m.zip", "not found.*fetch ml-1m"


def _checksum(root: Path):
    archive = make_zip("ml-1m", root)
    release = dataclasses.replace(RELEASES["ml-1m"], md5="0" * 32)
    return (lambda: verify_archive(archive, release)), "ml-1m.zip", "MD5 .* does not match"


def _slip_or_link(member: str, link: bool) -> Case:
    def build(root: Path):
        archive = root / "evil.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            info = zipfile.ZipInfo(member)
            if link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "x")
        problem = "symbolic link" if link else "outside the target folder"
        return (lambda: extract_archive(archive, root / "out")), "evil.zip", problem

    return build


def _fold_unknown_user(root: Path):
    (root / "ml-100k" / "u1.test").write_text("99\t1\t5\t881250949\n")
    return (lambda: load_ml100k_fold("u1", root, cache=False)), "u1.test", "not in u.data"


def _csv(content: str, problem: str, **kw: object) -> Case:
    def build(root: Path):
        path = root / "log.csv"
        path.write_text(content)
        return (lambda: load_interactions(path, **kw)), "log.csv", problem

    return build


def _csv_missing_file(root: Path):
    return (lambda: load_interactions(root / "absent.csv")), "absent.csv", "file not found"


def _npz(problem: str, **arrays: object) -> Case:
    def build(root: Path):
        path = root / "emb.npz"
        np.savez(path, **arrays)
        return (lambda: load_embeddings(path)), "emb.npz", problem

    return build


def _npz_raw(content: bytes, problem: str) -> Case:
    def build(root: Path):
        path = root / "emb.npz"
        path.write_bytes(content)
        return (lambda: load_embeddings(path)), "emb.npz", problem

    return build


GOOD = np.ones((3, 4))
NAN = np.ones((3, 4))
NAN[1, 2] = np.nan
INF = np.ones((2, 4))
INF[1, 0] = np.inf
ZERO = np.ones((3, 4))
ZERO[2] = 0

CASES: dict[str, Case] = {
    "100k-empty": _expect(_ml("ml-100k", "u.data", b""), "empty"),
    "100k-3-columns": _expect(_ml("ml-100k", "u.data", "1\t2\t3\n"), "cannot parse"),
    "100k-5-columns": _expect(_ml("ml-100k", "u.data", "1\t2\t3\t4\t5\n"), "cannot parse"),
    "100k-rating-text": _expect(_ml("ml-100k", "u.data", "1\t2\tfive\t881250949\n"), "cannot parse"),
    "100k-comma-sep": _expect(_ml("ml-100k", "u.data", "1,2,3,881250949\n"), "cannot parse"),
    "100k-item-no-id": _expect(_ml("ml-100k", "u.item", "Toy Story|x\n"), "line 1"),
    "1m-single-colons": _expect(_ml("ml-1m", "ratings.dat", "1:1193:5:978300760\n"), "cannot parse"),
    "1m-extra-field": _expect(_ml("ml-1m", "ratings.dat", "1::1193::5::978300760::9\n"), "cannot parse"),
    "1m-empty-user": _expect(_ml("ml-1m", "ratings.dat", "::1193::5::978300760\n"), "empty 'user'"),
    "1m-nan-rating": _expect(_ml("ml-1m", "ratings.dat", "1::1193::nan::978300760\n"), "NaN or infinite"),
    "1m-invalid-bytes": _expect(_ml("ml-1m", "ratings.dat", b"1::11\xff3::5::978300760\n"), "cannot parse"),
    "1m-movies-garbage": _expect(_ml("ml-1m", "movies.dat", "no separators here\n"), "line 1"),
    "10m-tab-sep": _expect(_ml("ml-10m", "ratings.dat", "1\t122\t5\t838985046\n"), "cannot parse"),
    "20m-no-header": _expect(_ml("ml-20m", "ratings.csv", "1,2,3.5,1112486027\n"), "header"),
    "20m-missing-column": _expect(_ml("ml-20m", "ratings.csv", "userId,movieId,rating\n1,2,3.5\n"), "header"),
    "20m-extra-column": _expect(
        _ml("ml-20m", "ratings.csv", "userId,movieId,rating,timestamp,x\n1,2,3.5,4,5\n"), "header"
    ),
    "20m-header-only": _expect(
        _ml("ml-20m", "ratings.csv", "userId,movieId,rating,timestamp\n"), "no ratings rows"
    ),
    "20m-movies-no-title": _expect(
        _ml("ml-20m", "movies.csv", "movieId,genres\n2,Adventure\n"), "cannot parse movies"
    ),
    "25m-semicolons": _expect(
        _ml("ml-25m", "ratings.csv", "userId;movieId;rating;timestamp\n1;2;3;4\n"), "header"
    ),
    "small-user-text": _expect(
        _ml("ml-latest-small", "ratings.csv", "userId,movieId,rating,timestamp\r\nbob,2,3.5,1\r\n"),
        "cannot parse",
    ),
    "zip-garbage": _expect(_zip_bytes(lambda b: b"PK\x03\x04 not really a zip" * 10), "not a readable zip"),
    "zip-truncated": _expect(_zip_bytes(lambda b: b[: len(b) // 2]), "not a readable zip"),
    "zip-wrong-layout": _zip_wrong_layout,
    "unknown-release": _unknown_release,
    "missing-root": _missing_root,
    "release-absent": _release_absent,
    "checksum-mismatch": _checksum,
    "zip-slip": _slip_or_link("../../escape.txt", link=False),
    "zip-symlink": _slip_or_link("ml-1m/link", link=True),
    "fold-unknown-user": _fold_unknown_user,
    "csv-missing-column": _csv("user,item\n1,2\n", "missing column.*rating"),
    "csv-rating-text": _csv("user,item,rating\n1,2,good\n", "'rating' row 1"),
    "csv-wrong-sep": _csv("user;item;rating\n1;2;3\n", "missing column"),
    "csv-empty": _csv("", "empty"),
    "csv-empty-id": _csv("user,item,rating\n1,,3\n", "'item' row 1 is empty"),
    "csv-header-only": _csv("user,item,rating\n", "no rows"),
    "csv-bad-timestamp": _csv("user,item,rating,t\n1,2,3,yesterday-ish\n", "'t'", timestamp_col="t"),
    "csv-missing-file": _csv_missing_file,
    "npz-nan": _npz("users row 1 holds NaN", users=NAN, creators=GOOD),
    "npz-inf": _npz("creators row 1 holds NaN or infinite", users=GOOD, creators=INF),
    "npz-zero-row": _npz("users row 2 is all zeros", users=ZERO, creators=GOOD),
    "npz-missing-array": _npz("missing array.*creators", users=GOOD),
    "npz-mismatched-d": _npz("d=4 but creators have d=3", users=GOOD, creators=np.ones((5, 3))),
    "npz-1d": _npz("expected 2-D", users=np.ones(4), creators=GOOD),
    "npz-empty": _npz("at least one row", users=np.ones((0, 4)), creators=GOOD),
    "npz-strings": _npz("expected numbers", users=np.array([["a", "b"]]), creators=GOOD),
    "npz-object-pickle": _npz("not a readable .npz", users=np.array([{"a": 1}], dtype=object), creators=GOOD),
    "npz-garbage": _npz_raw(b"this is not an npz file", "not a readable .npz"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_data_error(name: str, fixture_root: Path) -> None:
    call, fragment, problem = CASES[name](fixture_root)
    with pytest.raises(DataError) as err:
        call()
    message = str(err.value)
    assert fragment in message, message
    assert re.search(problem, message), message
    assert "\n" not in message
    cache = fixture_root / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []  # no partial cache left behind


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rectest.data", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.mark.parametrize("case", ["unknown", "missing", "corrupt"])
def test_cli_reports_one_line_and_exit_code_2(case: str, fixture_root: Path) -> None:
    if case == "unknown":
        args = ("info", "ml-2m", "--root", str(fixture_root))
    elif case == "missing":
        args = ("info", "ml-1m", "--root", str(fixture_root / "nowhere"))
    else:
        (fixture_root / "ml-1m" / "ratings.dat").write_text("1::x::5::978300760\n")
        args = ("info", "ml-1m", "--root", str(fixture_root))
    result = _cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rectest: error: ")
    assert result.stdout == ""


def test_cli_info_prints_counts(fixture_root: Path) -> None:
    result = _cli("info", "ml-10m", "--root", str(fixture_root))
    assert result.returncode == 0, result.stderr
    assert "ml-10m: 5 ratings, 3 users, 3 items" in result.stdout
    assert "0.5: 1" in result.stdout and "4.5: 1" in result.stdout
