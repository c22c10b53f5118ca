"""Straightforward per-user reference implementations of spec sections 2, 3 and 5, written
independently of rectest.sim (plain loops over users and creators on 1-D tensors)."""

from __future__ import annotations

import math

import torch


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm()


def user_probabilities(s, V, beta=1.0, k=None, tau=None, eps=0.0):
    """p over the n creators for one user with scores s (n,)."""
    n = s.shape[0]
    order = sorted(range(n), key=lambda i: -float(s[i]))
    eligible = set(order[:k]) if k is not None else set(range(n))
    if tau is not None:
        eligible = {i for i in eligible if float(s[i]) >= tau}
    p = torch.zeros(n, dtype=torch.float64)
    if not eligible:
        p[:] = 1.0 / n
    elif math.isinf(beta):
        best = max(eligible, key=lambda i: (float(s[i]), -i))
        p[best] = 1.0
    else:
        top = max(float(s[i]) for i in eligible)
        for i in eligible:
            p[i] = math.exp(beta * (float(s[i]) - top))
        p /= p.sum()
    return (1 - eps) * p + eps / n


def mmr_list(s, V, k, lam):
    """Greedy MMR list of k creator indices for one user."""
    picked = []
    for _ in range(k):
        best, best_val = None, -math.inf
        for i in range(len(s)):
            if i in picked:
                continue
            if picked:
                val = lam * float(s[i]) - (1 - lam) * max(float(V[i] @ V[q]) for q in picked)
            else:
                val = float(s[i])
            if val > best_val:
                best, best_val = i, val
        picked.append(best)
    return picked


def update(U, V, chosen, eta_u, eta_c, f=torch.sign, g=torch.sign):
    """One synchronous update for one replica: U (m, d), V (n, d), chosen (m,) ints."""
    m, n = U.shape[0], V.shape[0]
    new_u = U.clone()
    for j in range(m):
        i = int(chosen[j])
        s = U[j] @ V[i]
        new_u[j] = unit(U[j] + eta_u * f(s) * V[i])
    new_v = V.clone()
    for i in range(n):
        audience = [j for j in range(m) if int(chosen[j]) == i]
        if audience:
            pull = sum(g(U[j] @ V[i]) * U[j] for j in audience) / len(audience)
            new_v[i] = unit(V[i] + eta_c * pull)
    return new_u, new_v


def measures(U, V, P):
    """CD, RD, RR, TP by the definitions, for one replica: U (m, d), V (n, d), P (m, n) probabilities."""
    m, n = U.shape[0], V.shape[0]
    cd = sum(float((V[i] - V[k]).norm()) for i in range(n) for k in range(n) if i != k) / (n * (n - 1))
    tp = sum(abs(float(V[i] @ V[k])) for i in range(n) for k in range(n)) / n**2
    rd = rr = 0.0
    for j in range(m):
        vbar = sum(float(P[j, i]) * V[i].double() for i in range(n))
        rd += sum(float(P[j, i]) * float((V[i].double() - vbar).norm() ** 2) for i in range(n)) / m
        rr += sum(float(P[j, i]) * float(U[j] @ V[i]) for i in range(n)) / m
    return {"CD": cd, "RD": rd, "RR": rr, "TP": tp}
