"""Benchmark the MovieLens data path at ml-20m scale and print a table.

Generates a 20,000,263-row ratings.csv shaped like ml-20m (138,493 users, 26,744 rated movies,
half-star ratings, timestamps) under ``.bench/ml-20m/`` (git-ignored), then runs each phase in a fresh
Python process so its peak RSS is its own:

    parse CSV        pyarrow parse of ratings.csv to a table (the OS page cache is warm: just written)
    load, no cache   load_movielens(cache=False): parse + contiguous id maps + titles -> Interactions
    parse + cache    load_movielens(cache=True) with an empty cache: the above plus the parquet write
    reload cache     load_movielens(cache=True) again: read parquet + id maps -> Interactions

Usage: python benchmarks/bench_data.py [--rows N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package
BENCH = REPO / ".bench"
ROWS, USERS, ITEMS, MAX_MOVIE_ID = 20_000_263, 138_493, 26_744, 131_262
T0, T1 = 789_652_009, 1_427_784_002  # ml-20m's time range
PHASES = ("parse", "load", "cache_build", "cache_reload")
CODECS = ("zstd", "lz4", "snappy", "none")
REPEATS = 3


def generate(root: Path, rows: int, seed: int = 0) -> float:
    """Write ``root/ml-20m/{ratings,movies}.csv``; returns seconds. Every user and item appears."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    users, items = min(USERS, rows), min(ITEMS, rows)
    movie_ids = np.sort(rng.choice(np.arange(1, MAX_MOVIE_ID + 1), size=items, replace=False))
    user = rng.integers(0, users, size=rows)
    user[:users] = np.arange(users)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9  # long-tailed item popularity
    item = rng.choice(items, size=rows, p=popularity / popularity.sum())
    item[:items] = np.arange(items)
    order = np.lexsort((item, user))  # the real file is sorted by user, then movie
    table = pa.table(
        {
            "userId": (user[order] + 1).astype(np.int32),
            "movieId": movie_ids[item[order]].astype(np.int32),
            "rating": (rng.integers(1, 11, size=rows) / 2).astype(np.float32),
            "timestamp": rng.integers(T0, T1, size=rows),
        }
    )
    folder = root / "ml-20m"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ratings.csv", "wb") as out:
        out.write(b"userId,movieId,rating,timestamp\n")  # pyarrow would quote the header names
        pcsv.write_csv(table, out, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    movies = pa.table(
        {"movieId": movie_ids, "title": [f"Movie {i} (2000)" for i in movie_ids], "genres": ["Drama"] * items}
    )
    pcsv.write_csv(movies, folder / "movies.csv")
    (folder / "ROWS").write_text(str(rows))
    return time.perf_counter() - start


def run_phase(phase: str, root: Path) -> dict:
    """Run one phase in this process; returns seconds, rows and peak RSS (MiB)."""
    from rectest.data import load_movielens
    from rectest.data.parsers import read_ratings
    from rectest.data.releases import FORMAT_CSV

    cache = root / "cache"
    start = time.perf_counter()
    if phase == "parse":
        rows = read_ratings(root / "ml-20m" / "ratings.csv", FORMAT_CSV, "ratings.csv").num_rows
    else:
        use_cache = phase != "load"
        rows = len(load_movielens("ml-20m", root, cache=use_cache, cache_dir=cache))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"phase": phase, "seconds": seconds, "rows": rows, "peak_rss_mib": peak}


def _child(phase: str, root: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--root", str(root)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _read_seconds(path: Path) -> float:
    import pyarrow.parquet as pq

    start = time.perf_counter()
    back = pq.read_table(path)
    _ = [back.column(c).to_numpy() for c in back.column_names]
    return time.perf_counter() - start


def codec_table(cache_file: Path) -> str:
    """Write and read the cached table with each parquet codec, side by side (to choose the cache codec)."""
    import pyarrow.parquet as pq

    table = pq.read_table(cache_file)
    lines = [f"{'cache codec':<16}{'write s':>10}{'read s (best of ' + str(REPEATS) + ')':>22}{'MiB':>8}"]
    for codec in CODECS:
        path = cache_file.with_name(f"codec-{codec}.parquet")
        start = time.perf_counter()
        pq.write_table(table, path, compression=codec)
        write = time.perf_counter() - start
        read = min(_read_seconds(path) for _ in range(REPEATS))
        lines.append(f"{codec:<16}{write:>10.2f}{read:>22.2f}{path.stat().st_size / 2**20:>8.0f}")
        path.unlink()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--keep", action="store_true", help="keep .bench/ (reuse the CSV next time)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=BENCH / "data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.root)))
        return
    root = args.root
    marker = root / "ml-20m" / "ROWS"
    gen = None
    if not (marker.is_file() and marker.read_text() == str(args.rows)):
        shutil.rmtree(root, ignore_errors=True)
        gen = generate(root, args.rows)
    shutil.rmtree(root / "cache", ignore_errors=True)
    size = (root / "ml-20m" / "ratings.csv").stat().st_size
    results = [_child(phase, root) for phase in PHASES]
    cache_files = list((root / "cache").glob("*.parquet"))
    cache_size = sum(p.stat().st_size for p in cache_files)
    print(f"ml-20m-shaped ratings.csv: {args.rows:,} rows, {size / 2**20:,.0f} MiB"
          + (f" (generated in {gen:.1f} s)" if gen is not None else " (reused)")
          + f"; parquet cache {cache_size / 2**20:,.0f} MiB")  # fmt: skip
    print(f"{'phase':<16}{'seconds':>10}{'rows/s':>16}{'peak RSS MiB':>15}")
    names = {
        "parse": "parse CSV",
        "load": "load, no cache",
        "cache_build": "parse + cache",
        "cache_reload": "reload cache",
    }
    for r in results:
        print(
            f"{names[r['phase']]:<16}{r['seconds']:>10.2f}{r['rows'] / r['seconds']:>16,.0f}{r['peak_rss_mib']:>15,.0f}"
        )
    base = next(r["seconds"] for r in results if r["phase"] == "load")
    reload = next(r["seconds"] for r in results if r["phase"] == "cache_reload")
    print(f"reload from cache is {base / reload:.1f}x faster than parsing the CSV")
    print(codec_table(cache_files[0]))
    if not args.keep:
        shutil.rmtree(BENCH, ignore_errors=True) if root == BENCH / "data" else None


if __name__ == "__main__":
    main()
