"""Scoring function, state construction and the import boundary of rectest.sim."""

import ast
import math
from pathlib import Path

import pytest
import torch

from rectest.sim import State, cosine_scores, random_sphere


def test_cosine_scores_is_the_cosine_for_any_norms(gen):
    u = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    s = cosine_scores(3.0 * u, 0.5 * v)
    assert s.shape == (2, 5, 3)
    for r in range(2):
        for j in range(5):
            for i in range(3):
                want = float(u[r, j] @ v[r, i]) / float(u[r, j].norm() * v[r, i].norm())
                assert s[r, j, i].item() == pytest.approx(want, abs=1e-12)


def test_random_sphere_is_unit_reproducible_and_isotropic():
    a = random_sphere(3, 4000, 5, torch.Generator().manual_seed(0))
    b = random_sphere(3, 4000, 5, torch.Generator().manual_seed(0))
    assert a.shape == (3, 4000, 5)
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=-1), torch.ones(3, 4000), atol=1e-6)
    # isotropy: E[x x^T] = I / d, each entry's sample error ~ 1/sqrt(12000 * d)
    second = torch.einsum("rmi,rmj->ij", a, a) / 12000
    assert torch.allclose(second, torch.eye(5) / 5, atol=0.02)


def test_state_normalises_and_accepts_2d(gen):
    st = State(torch.randn(6, 3, generator=gen) * 7, torch.randn(4, 3, generator=gen))
    assert st.users.shape == (1, 6, 3) and st.creators.shape == (1, 4, 3)
    assert torch.allclose(st.users.norm(dim=-1), torch.ones(1, 6), atol=1e-6)
    assert (st.replicas, st.m, st.n, st.d) == (1, 6, 4, 3)


@pytest.mark.parametrize(
    "users, creators, match",
    [
        (torch.ones(2, 3, 4), torch.ones(3, 3, 4), "replica"),
        (torch.ones(2, 3, 4), torch.ones(2, 3, 5), "dimension"),
        (torch.full((1, 2, 2), math.nan), torch.ones(1, 2, 2), "finite"),
        (torch.zeros(1, 2, 2), torch.ones(1, 2, 2), "zero vector"),
        (torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.long), "floating"),
    ],
)
def test_state_rejects_bad_tensors(users, creators, match):
    with pytest.raises(ValueError, match=match):
        State(users, creators)


def test_sim_imports_only_torch_stdlib_and_itself():
    import sys

    root = Path(__file__).resolve().parents[2] / "rectest" / "sim"
    allowed = set(sys.stdlib_module_names) | {"torch", "rectest"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("rectest"):
                    assert name == "rectest.sim" or name.startswith("rectest.sim."), (
                        f"{path.name} imports {name}"
                    )
