"""The README's Python pipeline example against the same simulation through the command line.

Each runs in a fresh process; the figure compared is the engine time ``timings.simulate_s`` of summary.json
(the loop alone: data loading, Python start-up and reports left out). Also shown: the example without its
``use_threads`` line (torch's default threads), the case the entry point's thread rule exists for.

    .venv/bin/python benchmarks/bench_api.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [
    "+experiment=topk", "sim.init=truth", "sim.steps=200", "sim.seeds=[0,1]", "sim.log_every=10",
    "policy.k=[1,5,10,n]", "logger.tensorboard=false", "logger.progress=false",
]  # fmt: skip


def example(without_threads: bool) -> str:
    """The README's second python block, writing into a given folder."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    code = blocks[1].replace('Path("outputs/notebook-topk")', "Path(sys.argv[1])")
    if without_threads:
        code = "\n".join(line for line in code.splitlines() if not line.startswith("use_threads("))
    return "import sys\n" + code


def simulate_s(folder: Path) -> float:
    return float(json.loads((folder / "summary.json").read_text())["timings"]["simulate_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {
        "command line": [],
        "README example": [],
        "example without use_threads": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name in times:
                folder = Path(tmp) / f"{i}-{len(times[name])}-{name.replace(' ', '_')}"
                if name == "command line":
                    cmd = [sys.executable, "-m", "rectest.train", *CLI, f"hydra.run.dir={folder}"]
                else:
                    cmd = [sys.executable, "-c", example(name != "README example"), str(folder)]
                done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
                times[name].append(simulate_s(folder))
    base = statistics.median(times["command line"])
    print(f"| how | engine time (median of {args.repeats}) | / command line |")
    print("|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} s | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
