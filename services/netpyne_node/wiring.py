"""Fixed-probability connections drawn in O(N·k) with NumPy, handed to NetPyNE as ``connList``.

NetPyNE's ``probability`` rule (``netpyne/network/conn.py``, ``generateRandsPrePost``) draws one
uniform number per candidate (pre, post) pair and keeps them all in a dict: time and memory grow
as N_pre × N_post (measured ~2.7 µs and ~160 B per pair: 4,000 cells per region took 122 s, 8,000
took 6 GB). This module draws the same random graph from its definition instead:

- each post cell's in-degree is Binomial(n_candidates, p), n_candidates = N_pre, or N_pre − 1 when
  pre and post are the same population (NetPyNE draws the self pair too, then drops the
  self-connection: ``allowSelfConns`` is off, so its in-degree is Binomial(N − 1, p) as well);
- its sources are that many distinct pre cells drawn uniformly without replacement (every
  candidate pair independently present with probability p: the same Erdős–Rényi graph);
- each connection's weight is ``max(0, N(w, sd))`` drawn by NumPy (the rule's weight string in
  NEURON's ``normal(mean, variance)`` is the same distribution).

Work and memory are proportional to the connections made (N_post · k), not to the pairs.
Seeded by (run seed, rule label) with NumPy's SeedSequence, so every process (MPI ranks, a
resumed run) draws the same network; NetPyNE's own rule is still available (``network.wiring:
netpyne``; the toolbox's fixed wiring needs it).
"""
from __future__ import annotations

import zlib

import numpy as np


def rule_rng(seed: int, label: str) -> np.random.Generator:
    """The generator of one connection rule: the same in every process for (seed, label)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x57A1E, zlib.crc32(label.encode())]))


def fixed_probability(n_pre: int, n_post: int, p: float, rng: np.random.Generator,
                      same_pop: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(pre, post) indices of a fixed-probability rule, sorted by post then pre: every pair
    (pre ≠ post if ``same_pop``) present independently with probability ``p``."""
    n_cand = n_pre - 1 if same_pop else n_pre
    if n_post <= 0 or n_cand <= 0 or p <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = rng.binomial(n_cand, min(float(p), 1.0), size=n_post)
    total = int(k.sum())
    pre = np.empty(total, np.int64)
    post = np.repeat(np.arange(n_post, dtype=np.int64), k)
    at = 0
    for j in np.flatnonzero(k):
        kj = int(k[j])
        src = np.sort(rng.choice(n_cand, kj, replace=False))
        if same_pop:
            src[src >= j] += 1                  # candidates are every cell but j itself
        pre[at:at + kj] = src
        at += kj
    return pre, post


def clipped_normal(w: float, sd: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` weights ``max(0, N(w, sd))``."""
    if sd <= 0:
        return np.full(n, max(float(w), 0.0))
    return np.maximum(rng.normal(float(w), float(sd), size=n), 0.0)


def weight_sd(w: float, sd_frac: float, as_variance: bool) -> float:
    """The standard deviation of a rule's weights: ``sd_frac * w``, or (toolbox (a)) the square root
    of ``sd_frac * w`` given to NEURON's ``normal(mean, variance)`` as its variance."""
    if sd_frac <= 0 or w == 0:
        return 0.0
    return float(np.sqrt(w * sd_frac)) if as_variance else float(sd_frac * w)


def conn_list_rule(src: str, tgt: str, n_pre: int, n_post: int, p: float, w: float, sd: float, delay: float,
                   receptor: str, seed: int, drawn_as: str | None = None) -> dict | None:
    """A NetPyNE ``connList`` rule drawing ``src -> tgt`` at probability ``p`` (None: no connection).
    ``drawn_as``: the rule label whose seed draws it (stand-ins of another service's cells draw
    exactly the connections of the rule they stand in for; default ``src->tgt``)."""
    label = drawn_as or f"{src}->{tgt}"
    rng = rule_rng(seed, label)
    pre_pop, _, post_pop = label.partition("->")
    pre, post = fixed_probability(n_pre, n_post, p, rng, same_pop=pre_pop == post_pop)
    if pre.size == 0:
        return None
    weights = clipped_normal(w, sd, pre.size, rng)
    rule = {"preConds": {"pop": src}, "postConds": {"pop": tgt},
            "connList": np.stack([pre, post], axis=1).tolist(), "delay": delay, "synMech": receptor}
    # NetPyNE reads a one-element weight list as "the same for all": a scalar says so plainly
    rule["weight"] = float(weights[0]) if sd <= 0 or pre.size == 1 else weights.tolist()
    return rule
