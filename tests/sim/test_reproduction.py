"""Statistical reproduction of the paper's synthetic setting (spec section 7): d=10, n=50, m=100,
T=1000, eta_u=eta_c=0.1, 8 seeds per setting, every setting a replica of ONE batched simulation."""

import math

import pytest
import torch

from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere

SEEDS = 8
D, N, M, T = 10, 50, 100, 1000
# name -> (beta, k, tau, eta)
SETTINGS = {
    "top1": (1.0, 1, -1.0, 0.1),
    "softmax1": (1.0, N, -1.0, 0.1),
    "threshold": (1.0, N, 0.707, 0.1),
    "softmax3": (3.0, N, -1.0, 0.1),
    "softmax10": (10.0, N, -1.0, 0.1),
    "top5": (1.0, 5, -1.0, 0.1),
    "top10": (1.0, 10, -1.0, 0.1),
    "eta0.01": (1.0, N, -1.0, 0.01),
    "eta0.003": (1.0, N, -1.0, 0.003),
}


@pytest.fixture(scope="module")
def final():
    """Final measures (mean over seeds) of every setting, from one batched run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add overhead
    rows = [params for params in SETTINGS.values() for _ in range(SEEDS)]
    beta, k, tau, eta = (list(col) for col in zip(*rows, strict=True))
    R = len(rows)
    g = torch.Generator().manual_seed(2024)
    state = State(random_sphere(R, M, D, g), random_sphere(R, N, D, g))
    sim = Simulation(
        state, Policy(beta=beta, k=k, tau=tau), Dynamics(eta_u=eta, eta_c=eta), seeds=range(R), log_every=T
    )
    try:
        hist = sim.run(T)
    finally:
        torch.set_num_threads(threads)
    assert hist["step"].tolist() == [0, T - 1]
    out = {}
    for s, name in enumerate(SETTINGS):
        cols = slice(s * SEEDS, (s + 1) * SEEDS)
        out[name] = {m: hist[m][-1, cols].mean().item() for m in ("CD", "RD", "RR", "TP")}
    return out


@pytest.mark.slow
def test_top1_keeps_the_initial_diversity(final):
    assert final["top1"]["CD"] == pytest.approx(1.40, abs=0.03)
    assert final["top1"]["TP"] == pytest.approx(0.27, abs=0.03)
    assert final["top1"]["RR"] > 0.99 and final["top1"]["RD"] < 0.01


@pytest.mark.slow
def test_plain_softmax_polarizes_to_the_closed_form(final):
    soft = final["softmax1"]
    assert soft["TP"] > 0.95
    assert soft["CD"] == pytest.approx(1.0, abs=0.05)
    assert soft["RR"] == pytest.approx(math.tanh(1.0), abs=0.03)
    assert soft["RD"] == pytest.approx(1 / math.cosh(1.0) ** 2, abs=0.03)


@pytest.mark.slow
def test_threshold_keeps_polarization_low(final):
    assert final["threshold"]["TP"] < 0.4


@pytest.mark.slow
def test_tp_falls_as_beta_grows_k_shrinks_and_eta_shrinks(final):
    tp = {name: v["TP"] for name, v in final.items()}
    assert tp["softmax1"] >= tp["softmax3"] - 0.02 >= tp["softmax10"] - 0.04
    assert tp["softmax1"] > tp["softmax10"] + 0.2
    assert tp["softmax1"] >= tp["top10"] - 0.02 >= tp["top5"] - 0.04 >= tp["top1"] - 0.06
    assert tp["softmax1"] > tp["top1"] + 0.5
    assert tp["softmax1"] >= tp["eta0.01"] - 0.02 >= tp["eta0.003"] - 0.04
    assert tp["softmax1"] > tp["eta0.003"] + 0.2
