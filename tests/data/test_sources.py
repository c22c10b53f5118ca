"""Hydra data options: every conf/data/*.yaml composes and instantiates to a DataBundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from rectest.data import DataBundle
from rectest.data.releases import RELEASES
from rectest.errors import ConfigError
from tests.data.conftest import REPO

OPTIONS = ["synthetic", *RELEASES, "csv", "embeddings"]


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    """A primary config holding only the data group (the other groups belong to other modules)."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf" / "data", conf / "data")
    (conf / "cfg.yaml").write_text("defaults:\n  - data: synthetic\n  - _self_\nseed: 0\n")
    return conf


def _bundle(conf_dir: Path, *overrides: str) -> DataBundle:
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return instantiate(compose("cfg", overrides=list(overrides)).data)


def test_every_option_exists() -> None:
    assert sorted(p.stem for p in (REPO / "conf" / "data").glob("*.yaml")) == sorted(OPTIONS)


def test_synthetic(conf_dir: Path) -> None:
    bundle = _bundle(conf_dir, "data=synthetic", "data.n_users=20")
    assert bundle.name == "synthetic" and bundle.world.users.shape == (20, 10)
    assert len(bundle.interactions) == 20 * 40
    assert len(bundle.split.train) + len(bundle.split.val) + len(bundle.split.test) == 800


@pytest.mark.parametrize("release", list(RELEASES))
def test_movielens_options(conf_dir: Path, fixture_root: Path, release: str) -> None:
    bundle = _bundle(conf_dir, f"data={release}", f"data.path={fixture_root}", "data.download=false")
    assert bundle.name == release and bundle.world is None and bundle.embeddings is None
    parts = bundle.split
    assert len(parts.train) + len(parts.val) + len(parts.test) == len(bundle.interactions)


def test_ml100k_defaults_to_fold_u1(conf_dir: Path, fixture_root: Path) -> None:
    bundle = _bundle(conf_dir, "data=ml-100k", f"data.path={fixture_root}")
    test_file = (fixture_root / "ml-100k" / "u1.test").read_text().splitlines()
    assert len(bundle.split.test) == len(test_file)


def test_fold_on_other_release_is_refused(conf_dir: Path, fixture_root: Path) -> None:
    with pytest.raises(Exception, match="'u2' is an ml-100k fold") as err:
        _bundle(conf_dir, "data=ml-1m", f"data.path={fixture_root}", "data.split=u2")
    cause = err.value if isinstance(err.value, ConfigError) else err.value.__cause__
    assert isinstance(cause, ConfigError)  # Hydra wraps it; the pipeline can unwrap the user error


def test_csv_and_embeddings(conf_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("u,i,r\n" + "".join(f"{u},{i},{(u + i) % 5}\n" for u in range(10) for i in range(6)))
    bundle = _bundle(
        conf_dir, "data=csv", f"data.path={log}", "data.user_col=u", "data.item_col=i", "data.rating_col=r"
    )
    assert bundle.name == "csv" and len(bundle.interactions) == 60
    emb = tmp_path / "emb.npz"
    np.savez(emb, users=np.ones((3, 2)), creators=np.eye(2))
    bundle = _bundle(conf_dir, "data=embeddings", f"data.path={emb}")
    assert bundle.interactions is None and bundle.split is None
    assert bundle.embeddings[0].shape == (3, 2)


def test_misspelt_key_fails(conf_dir: Path) -> None:
    with pytest.raises(Exception, match="n_user"):
        _bundle(conf_dir, "data=synthetic", "+data.n_user=5")


def test_data_package_imports_stay_light() -> None:
    import subprocess
    import sys

    code = "import sys, rectest.data; print(sorted(m for m in ('torch', 'pytorch_lightning', 'hydra') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
