"""The MovieLens releases: where each one's files live and how they are written (spec data.md).

One :class:`Release` per GroupLens archive. Loaders, the downloader and the CLI read everything they
need from this table, so adding a release is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rectest.errors import DataError

BASE_URL = "https://files.grouplens.org/datasets/movielens/"

# Ratings-file formats.
FORMAT_TAB = "tab"  # ml-100k u.data: user \t item \t rating \t timestamp, no header
FORMAT_DCOLON = "dcolon"  # ml-1m / ml-10m ratings.dat: user::item::rating::timestamp, no header
FORMAT_CSV = "csv"  # ml-20m / ml-25m / latest: header userId,movieId,rating,timestamp

# Movies-file formats.
MOVIES_PIPE = "pipe"  # ml-100k u.item: id|title|date|...
MOVIES_DCOLON = "dcolon"  # movies.dat: id::title::genres
MOVIES_CSV = "csv"  # movies.csv: movieId,title,genres (quoted titles)


@dataclass(frozen=True)
class Release:
    """One MovieLens archive and the layout of its files.

    Attributes:
        name: release name as users type it (``ml-100k``).
        folder: top-level folder inside the zip (``ml-10M100K`` for ml-10m).
        ratings_file: ratings file name inside ``folder``.
        ratings_format: one of the ``FORMAT_*`` constants.
        movies_file: movies file name inside ``folder``.
        movies_format: one of the ``MOVIES_*`` constants.
        movies_encoding: text encoding of the movies file.
        md5: published MD5 of the zip, or None when not pinned.
        sha256: SHA-256 of the zip, or None when not known.
        size: size of the zip in bytes, or None when not known.
        url: where the zip is downloaded from.
    """

    name: str
    folder: str
    ratings_file: str
    ratings_format: str
    movies_file: str
    movies_format: str
    movies_encoding: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    url: str = ""

    @property
    def archive(self) -> str:
        """The zip file name (``ml-100k.zip``)."""
        return f"{self.name}.zip"

    @property
    def pinned(self) -> bool:
        """Whether a published checksum is known for the archive."""
        return self.md5 is not None or self.sha256 is not None


def _release(name: str, folder: str, fmt: str, **kw: object) -> Release:
    ratings, movies, mfmt, enc = {
        FORMAT_TAB: ("u.data", "u.item", MOVIES_PIPE, "latin-1"),
        FORMAT_DCOLON: ("ratings.dat", "movies.dat", MOVIES_DCOLON, "latin-1"),
        FORMAT_CSV: ("ratings.csv", "movies.csv", MOVIES_CSV, "utf-8"),
    }[fmt]
    return Release(name, folder, ratings, fmt, movies, mfmt, enc, url=f"{BASE_URL}{name}.zip", **kw)  # type: ignore[arg-type]


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        _release(
            "ml-100k",
            "ml-100k",
            FORMAT_TAB,
            md5="0e33842e24a9c977be4e0107933c0723",
            sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            size=4_924_029,
        ),
        _release("ml-1m", "ml-1m", FORMAT_DCOLON, md5="c4d9eecfca2ab87c1945afe126590906"),
        _release("ml-10m", "ml-10M100K", FORMAT_DCOLON, md5="ce571fd55effeba0271552578f2648bd"),
        _release(
            "ml-20m",
            "ml-20m",
            FORMAT_CSV,
            md5="cd245b17a1ae2cc31bb14903e1204af3",
            sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            size=198_702_078,
        ),
        _release("ml-25m", "ml-25m", FORMAT_CSV, md5="6b51fb2759a8657d3bfcbfc42b592ada"),
        _release("ml-latest-small", "ml-latest-small", FORMAT_CSV),
    )
}

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


def get_release(name: str) -> Release:
    """Return the :class:`Release` called ``name``.

    Raises:
        DataError: for an unknown name (the message lists the known ones).
    """
    try:
        return RELEASES[name]
    except KeyError:
        known = ", ".join(RELEASES)
        raise DataError(f"unknown MovieLens release {name!r}; expected one of: {known}") from None
