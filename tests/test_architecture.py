"""The dependency direction of design.md section 1, enforced by parsing imports."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import imported_names

PKG = Path(__file__).resolve().parent.parent / "rectest"


def test_sim_depends_on_torch_and_stdlib_only():
    files = list((PKG / "sim").glob("*.py"))
    assert files, "rectest/sim has no modules"
    forbidden = ("numpy", "pandas", "lightning", "pytorch_lightning", "hydra", "omegaconf", "matplotlib")
    for path in files:
        for name in imported_names(path):
            top = name.split(".")[0]
            assert top not in forbidden, f"{path.name} imports {name}"
            if top == "rectest":
                assert name.startswith("rectest.sim"), f"{path.name} imports {name} from outside rectest.sim"


def test_models_use_data_types_and_the_sim_scoring_only():
    for path in (PKG / "models").glob("*.py"):
        for name in imported_names(path):
            if name.startswith("rectest."):
                allowed = name.startswith(
                    (
                        "rectest.models",
                        "rectest.data",
                        "rectest.sim.scoring",
                        "rectest.errors",
                        "rectest.files",
                    )
                )
                assert allowed, f"{path.name} imports {name}"


def test_only_pipeline_and_entry_points_read_hydra_config():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith(("sim/", "models/", "report/")):
            for name in imported_names(path):
                assert not name.startswith("hydra"), f"{rel} imports {name}"
