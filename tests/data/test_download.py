"""Download verification and safe extraction, never touching the network."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from rectest.data import load_movielens
from rectest.data.download import extract_archive, fetch, file_hashes, verify_archive
from rectest.data.releases import RELEASES, Release
from rectest.errors import DataError
from tests.data.conftest import make_zip


def _pinned(archive: Path, **change: object) -> Release:
    """The ml-1m release re-pinned to a local archive (optionally with a wrong field)."""
    data = archive.read_bytes()
    fields = {
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "url": "https://example.invalid/ml-1m.zip",
    }
    fields.update(change)
    return dataclasses.replace(RELEASES["ml-1m"], **fields)


def _local_downloader(source: Path, calls: list[str]):
    def download(url: str, output_file, pooch) -> None:  # pooch's downloader signature
        calls.append(url)
        shutil.copyfile(source, output_file)

    return download


@pytest.fixture
def ml1m_zip(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    return make_zip("ml-1m", src)


def test_file_hashes_match_hashlib(ml1m_zip: Path) -> None:
    data = ml1m_zip.read_bytes()
    assert file_hashes(ml1m_zip) == (hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())


def test_fetch_downloads_verifies_and_extracts(ml1m_zip: Path, tmp_path: Path) -> None:
    root, calls = tmp_path / "data", []
    fetch(_pinned(ml1m_zip), root, downloader=_local_downloader(ml1m_zip, calls))
    assert calls == ["https://example.invalid/ml-1m.zip"]
    assert (root / "ml-1m.zip").read_bytes() == ml1m_zip.read_bytes()
    assert (root / "ml-1m" / "ratings.dat").is_file()
    assert len(load_movielens("ml-1m", root, cache=False)) == 6
    assert not [p for p in root.iterdir() if p.name.startswith(".extract")]


def test_present_archive_is_not_downloaded_again(ml1m_zip: Path, tmp_path: Path) -> None:
    root, calls = tmp_path / "data", []
    root.mkdir()
    shutil.copyfile(ml1m_zip, root / "ml-1m.zip")
    fetch(_pinned(ml1m_zip), root, downloader=_local_downloader(ml1m_zip, calls), extract=False)
    assert calls == []


@pytest.mark.parametrize("field", ["md5", "sha256"])
def test_downloaded_mismatch_is_refused_and_deleted(ml1m_zip: Path, tmp_path: Path, field: str) -> None:
    root = tmp_path / "data"
    release = _pinned(ml1m_zip, **{field: "0" * (32 if field == "md5" else 64)})
    with pytest.raises(DataError, match="ml-1m") as err:
        fetch(release, root, downloader=_local_downloader(ml1m_zip, []))
    assert "match" in str(err.value)
    assert list(root.iterdir()) == []  # nothing half-written, nothing extracted


def test_truncated_download_is_refused_and_deleted(ml1m_zip: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(ml1m_zip.read_bytes()[:-30])
    root = tmp_path / "data"
    release = _pinned(ml1m_zip, sha256=None, md5=None, size=None)  # unpinned: zip integrity is still checked
    with pytest.raises(DataError, match="zip"):
        fetch(release, root, downloader=_local_downloader(truncated, []))
    assert list(root.iterdir()) == []


def test_user_archive_mismatch_is_refused_but_kept(ml1m_zip: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    shutil.copyfile(ml1m_zip, root / "ml-1m.zip")
    with pytest.raises(DataError, match="size"):
        fetch(_pinned(ml1m_zip, size=1), root)
    assert (root / "ml-1m.zip").is_file() and not (root / "ml-1m").exists()


def test_verify_detects_flipped_byte_via_crc(ml1m_zip: Path, tmp_path: Path) -> None:
    data = bytearray(ml1m_zip.read_bytes())
    with zipfile.ZipFile(ml1m_zip) as zf:
        info = zf.getinfo("ml-1m/ratings.dat")
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 2
    data[offset] ^= 0xFF
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="bad.zip"):
        verify_archive(bad, dataclasses.replace(RELEASES["ml-1m"], md5=None, sha256=None))


def _zip_with(path: Path, name: str, *, symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::2::3::4\n")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd" if symlink else "pwned")
    return path


@pytest.mark.parametrize("member", ["../evil.txt", "ml-1m/../../evil.txt", "/abs/evil.txt", "C:/evil.txt"])
def test_extract_refuses_zip_slip(tmp_path: Path, member: str) -> None:
    archive = _zip_with(tmp_path / "slip.zip", member)
    target = tmp_path / "out" / "inner"
    with pytest.raises(DataError, match="outside the target folder"):
        extract_archive(archive, target)
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert list(target.iterdir()) == []  # checked before anything is written


def test_extract_refuses_symlink(tmp_path: Path) -> None:
    archive = _zip_with(tmp_path / "link.zip", "ml-1m/link", symlink=True)
    target = tmp_path / "out"
    with pytest.raises(DataError, match="symbolic link"):
        extract_archive(archive, target)
    assert list(target.iterdir()) == []


def test_load_with_download_fetches_verifies_and_reads(ml1m_zip: Path, tmp_path: Path, monkeypatch) -> None:
    import rectest.data.download as download

    monkeypatch.setitem(RELEASES, "ml-1m", _pinned(ml1m_zip))
    calls: list[str] = []
    real = download._pooch_fetch
    monkeypatch.setattr(
        download, "_pooch_fetch", lambda rel, root, _: real(rel, root, _local_downloader(ml1m_zip, calls))
    )
    root = tmp_path / "fresh"
    with pytest.raises(DataError, match="fetch ml-1m"):
        load_movielens("ml-1m", root, cache=False)  # download is off by default
    assert calls == []
    log = load_movielens("ml-1m", root, download=True, cache=False)
    assert len(log) == 6 and len(calls) == 1


def test_a_network_error_is_one_message_without_pooch_chatter(
    ml1m_zip: Path, tmp_path: Path, capsys, caplog
) -> None:
    def offline(url: str, output_file, pooch) -> None:
        raise ConnectionError("network unreachable")

    with pytest.raises(DataError, match="download failed .*network unreachable"):
        fetch(_pinned(ml1m_zip), tmp_path / "data", downloader=offline)
    captured = capsys.readouterr()
    assert "Downloading data from" not in captured.err + captured.out + caplog.text
