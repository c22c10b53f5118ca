"""Command line: ``python -m rectest.data fetch ml-20m`` and ``python -m rectest.data info ml-100k``.

User errors print one line on stderr and exit with code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from rectest.data.download import fetch
from rectest.data.movielens import data_root, load_movielens
from rectest.data.releases import RELEASES, get_release
from rectest.errors import RectestError


def _info(release: str, root: str | None) -> None:
    log = load_movielens(release, root)
    values, counts = np.unique(log.rating, return_counts=True)
    print(f"{release}: {len(log):,} ratings, {log.num_users:,} users, {log.num_items:,} items")
    print("ratings: " + ", ".join(f"{v:g}: {c:,}" for v, c in zip(values, counts, strict=True)))
    if log.timestamp is not None:
        first, last = (np.datetime64(int(t), "s") for t in (log.timestamp.min(), log.timestamp.max()))
        print(f"time: {first} to {last} UTC")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rectest.data", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("fetch", "info"))
    parser.add_argument("release", help=f"one of: {', '.join(RELEASES)}")
    parser.add_argument("--root", default=None, help="data folder (default $RECTEST_DATA or ./data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        if args.command == "fetch":
            archive = fetch(get_release(args.release), data_root(args.root))
            print(f"{args.release}: verified and extracted {archive}")
        else:
            _info(args.release, args.root)
    except RectestError as err:
        print(f"rectest: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
