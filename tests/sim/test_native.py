"""rectest.sim.native: the allocator setting that lets a step reuse the last step's memory."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

from rectest.sim import native

# In a fresh interpreter: where a 64 MB tensor (above glibc's largest default threshold, so mapped on its own
# by default) lies, and whether the heap keeps its pages once it is freed.
PROBE = """
import json, torch
from rectest.sim import native
native.keep_freed_memory()
def heap():
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            return [int(x, 16) for x in line.split()[0].split("-")]
    return [0, 0]
x = torch.empty(16 << 20).fill_(1.0)
start, end = heap()
inside = start <= x.data_ptr() < end
del x
print(json.dumps({"inside": inside, "kept": heap()[1] == end}))
"""


def glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    except OSError:
        return False


def probe(switch: str) -> dict[str, bool]:
    env = {**os.environ, "RECTEST_NATIVE": switch, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    not glibc(), reason="the setting is glibc's (mallopt); other C libraries keep their default"
)
def test_a_freed_tensors_pages_stay_in_the_heap():
    """With the setting a 64 MB tensor comes from the heap, which keeps its pages once it is freed (the next
    step's temporaries reuse them instead of faulting in fresh ones); without it (RECTEST_NATIVE=0) the tensor
    is a mapping of its own, unmapped when freed."""
    assert probe("1") == {"inside": True, "kept": True}
    assert probe("0")["inside"] is False


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("RECTEST_NATIVE", "0")
    native.keep_freed_memory.cache_clear()
    try:
        assert native.keep_freed_memory() is False
    finally:
        native.keep_freed_memory.cache_clear()
