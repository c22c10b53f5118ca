"""Download, verify and safely extract MovieLens archives.

``fetch`` downloads with pooch (progress bar, no prompts), checks the pinned checksums and refuses
(and deletes) a mismatching or truncated archive; only then is it extracted, member by member, refusing
members whose paths leave the target folder and symlinks. Extraction goes to a temporary folder that
is moved into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from rectest.data.releases import Release
from rectest.errors import DataError

log = logging.getLogger(__name__)
_CHUNK = 1 << 20

Downloader = Callable[[str, str, object], None]  # pooch's (url, output_file, pooch) signature


def file_hashes(path: Path) -> tuple[str, str]:
    """The (md5, sha256) hex digests of a file, read once in chunks."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def verify_archive(path: Path, release: Release) -> None:
    """Check size, pinned MD5/SHA-256 and zip integrity (every member's CRC) of ``path``.

    Raises:
        DataError: naming the file and the mismatch; the caller decides whether to delete it.
    """
    if not path.is_file():
        raise DataError(f"{path}: archive not found")
    size = path.stat().st_size
    if release.size is not None and size != release.size:
        raise DataError(f"{path}: size {size:,} bytes, expected {release.size:,} (truncated or wrong file)")
    md5, sha = file_hashes(path)
    if release.md5 is not None and md5 != release.md5:
        raise DataError(f"{path}: MD5 {md5} does not match the published {release.md5}")
    if release.sha256 is not None and sha != release.sha256:
        raise DataError(f"{path}: SHA-256 {sha} does not match the pinned {release.sha256}")
    if not release.pinned:
        log.warning("%s has no pinned checksum; checking zip integrity only", release.name)
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable zip archive ({err})") from None
    if bad is not None:
        raise DataError(f"{path}: member {bad!r} fails its CRC check (corrupt archive)")


def _check_member(info: zipfile.ZipInfo, archive: Path) -> None:
    """Refuse absolute paths, ``..`` components and symlinks."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{archive}: member {name!r} would be written outside the target folder; refusing it")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"{archive}: member {name!r} is a symbolic link; refusing it")


def extract_archive(archive: Path, target: Path) -> list[Path]:
    """Extract ``archive`` into ``target`` safely; returns the top-level paths created.

    Every member is checked before anything is written. Files go to a temporary folder inside
    ``target`` and each top-level entry is then moved into place with ``os.replace``.

    Raises:
        DataError: unsafe member (path escape, symlink), corrupt archive.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
        raise DataError(f"{archive}: not a readable zip archive ({err})") from None
    target.mkdir(parents=True, exist_ok=True)
    with zf, tempfile.TemporaryDirectory(dir=target, prefix=".extract-") as tmp:
        for info in zf.infolist():
            _check_member(info, archive)
        try:
            zf.extractall(tmp)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
            raise DataError(f"{archive}: extraction failed ({err})") from None
        created = []
        for entry in sorted(Path(tmp).iterdir()):
            dest = target / entry.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(entry, dest)
            created.append(dest)
    return created


def _pooch_fetch(release: Release, root: Path, downloader: Downloader | None) -> Path:
    import pooch  # noqa: PLC0415 - only needed when downloading

    pooch.get_logger().setLevel("WARNING")  # no "Downloading data from ..." line: our errors say it all
    known = f"sha256:{release.sha256}" if release.sha256 else (f"md5:{release.md5}" if release.md5 else None)
    try:
        path = pooch.retrieve(
            release.url,
            known_hash=known,
            fname=release.archive,
            path=root,
            progressbar=True,
            downloader=downloader,
        )
    except ValueError as err:  # pooch's hash mismatch; it has already deleted the download
        raise DataError(f"{release.url}: download refused, {str(err).splitlines()[0]}") from None
    except Exception as err:  # network errors come in many types (requests, socket, ftp)
        raise DataError(f"{release.url}: download failed ({type(err).__name__}: {err})") from None
    return Path(path)


def fetch(release: Release, root: Path, downloader: Downloader | None = None, extract: bool = True) -> Path:
    """Download (unless present), verify and extract ``release`` into ``root``.

    An archive already in ``root`` (placed by the user) is verified too and refused when it mismatches;
    a freshly downloaded archive that mismatches is also deleted.

    Args:
        release: what to fetch.
        root: data folder; the zip lands at ``root/<release>.zip``.
        downloader: pooch downloader override (tests use a local copy; never the network).
        extract: also extract the verified zip into ``root``.

    Returns:
        The zip's path.
    """
    root.mkdir(parents=True, exist_ok=True)
    archive = root / release.archive
    downloaded = not archive.is_file()
    if downloaded:
        archive = _pooch_fetch(release, root, downloader)
    try:
        verify_archive(archive, release)
    except DataError:
        if downloaded:
            archive.unlink(missing_ok=True)
        raise
    if extract:
        extract_archive(archive, root)
    return archive
