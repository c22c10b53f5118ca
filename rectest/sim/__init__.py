"""The user-creator dual-influence dynamics (Lin et al., NeurIPS 2024): a pure-torch, replica-batched engine.

Example::

    import torch
    from rectest.sim import Dynamics, Policy, Simulation, State, random_sphere

    g = torch.Generator().manual_seed(0)
    state = State(random_sphere(1, 100, 10, g), random_sphere(1, 50, 10, g))  # m=100 users, n=50 creators
    sim = Simulation(state, Policy(beta=1.0, k=[1, 5, 10, 50]), Dynamics(eta_u=0.1, eta_c=0.1),
                     seeds=[0, 1, 2, 3])  # 4 replicas: one per k
    hist = sim.run(1000)
    print(hist["TP"][-1])  # (R,) final tendency to polarization
"""

from rectest.sim.dynamics import IMPACT_NAMES, Dynamics, impact_function
from rectest.sim.engine import Simulation
from rectest.sim.errors import SimulationError
from rectest.sim.measures import (
    MEASURES,
    count_clusters,
    creator_diversity,
    creator_pair_measures,
    pairwise_diversity_and_polarization,
    polarization_radius,
    recommendation_diversity,
    recommendation_relevance,
    tendency_to_polarization,
    user_diversity,
)
from rectest.sim.policies import Policy
from rectest.sim.sampling import sample_inverse_cdf
from rectest.sim.scoring import cosine_scores, normalize
from rectest.sim.shards import UserShards
from rectest.sim.state import State, random_sphere

__all__ = [
    "IMPACT_NAMES",
    "MEASURES",
    "Dynamics",
    "Policy",
    "Simulation",
    "SimulationError",
    "State",
    "UserShards",
    "cosine_scores",
    "count_clusters",
    "creator_diversity",
    "creator_pair_measures",
    "impact_function",
    "normalize",
    "pairwise_diversity_and_polarization",
    "polarization_radius",
    "random_sphere",
    "recommendation_diversity",
    "recommendation_relevance",
    "sample_inverse_cdf",
    "tendency_to_polarization",
    "user_diversity",
]
