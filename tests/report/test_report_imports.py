"""rectest/report's boundaries: no simulation internals, no Hydra, no pyplot; a light package import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import imported_names

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "rectest" / "report"


def test_report_imports_no_sim_hydra_lightning_or_pyplot():
    files = sorted(REPORT.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        for name in imported_names(path):
            assert not name.startswith("rectest.sim"), f"{path.name} imports {name}"
            assert name.split(".")[0] not in ("hydra", "omegaconf", "pytorch_lightning", "lightning"), (
                path.name
            )
            assert name != "matplotlib.pyplot", (
                f"{path.name} uses pyplot (global state); draw on Figure instead"
            )
            if name.startswith("rectest."):
                assert name.startswith(("rectest.report", "rectest.errors", "rectest.files")), (
                    f"{path.name} imports {name}"
                )


def test_package_import_does_not_load_matplotlib_or_tensorboard():
    code = "import sys, rectest.report; print(sorted(m for m in ('matplotlib', 'tensorboard') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
