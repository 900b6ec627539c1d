"""Transformers (pure numpy): statistics that can fail, exact estimator, proxy equations."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cosim.sdk.transformers import PoissonInput, RateProxy, bin_counts, bin_rates, rates_from_signal

pytestmark = [pytest.mark.unit]


def _trains(rate_hz, n=200, dt=0.1, W=16, windows=500, seed=1):
    g = PoissonInput(n, dt, seed, 33)
    ts, ids = [], []
    for k in range(windows):
        t, i = g.window(np.full(W, rate_hz), k * W * dt)
        assert np.all((t >= k * W * dt) & (t < (k + 1) * W * dt))
        assert np.all(np.diff(t) >= 0)
        ts.append(t)
        ids.append(i)
    return np.concatenate(ts), np.concatenate(ids), windows * W * dt


def test_poisson_rate_within_confidence_bounds():
    rate, n = 20.0, 200
    t, i, T = _trains(rate, n)
    expected = rate * n * T * 1e-3                   # 16,000 spikes
    assert abs(t.size - expected) < 4 * math.sqrt(expected)
    per_cell = np.bincount(i, minlength=n)
    # every neuron gets its own train at the same rate: chi-square-like spread check
    assert per_cell.min() > 0
    assert abs(per_cell.var() / per_cell.mean() - 1) < 0.35


def test_fano_factor_close_to_one_and_isi_exponential():
    t, i, T = _trains(40.0, n=50, windows=1000)
    counts = np.array([np.histogram(t[i == c], bins=np.arange(0, T + 1e-9, 50.0))[0] for c in range(50)]).ravel()
    fano = counts.var() / counts.mean()
    assert 0.85 < fano < 1.15, fano
    isi = np.concatenate([np.diff(t[i == c]) for c in range(50)])
    cv = isi.std() / isi.mean()
    assert 0.9 < cv < 1.1, cv


def test_piecewise_constant_rate_per_step():
    g = PoissonInput(1000, 0.1, 3, 1)
    rates = np.array([0, 100, 0, 400] * 4, dtype=float)
    tot = np.zeros(16)
    for k in range(200):
        t, _ = g.window(rates, k * 1.6)
        tot += bin_counts(t, k * 1.6, 0.1, 16)
    expected = rates * 1e-4 * 1000 * 200
    assert np.all(tot[rates == 0] == 0)
    nz = rates > 0
    assert np.all(np.abs(tot[nz] - expected[nz]) < 4 * np.sqrt(expected[nz]))


def test_same_seed_same_trains_other_seed_or_region_differs():
    a = PoissonInput(50, 0.1, 7, 33).window(np.full(16, 30.0), 0.0)
    b = PoissonInput(50, 0.1, 7, 33).window(np.full(16, 30.0), 0.0)
    c = PoissonInput(50, 0.1, 8, 33).window(np.full(16, 30.0), 0.0)
    d = PoissonInput(50, 0.1, 7, 71).window(np.full(16, 30.0), 0.0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])


def _cut(g, rates, sizes, dt=0.1):
    """The trains of ``rates`` (one per step) drawn window by window, windows of ``sizes`` steps."""
    ts, ids, k = [], [], 0
    for w in sizes:
        t, i = g.window(rates[k:k + w], k * dt)
        ts.append(t)
        ids.append(i)
        k += w
    return np.concatenate(ts), np.concatenate(ids)


def test_trains_do_not_depend_on_the_window_length():
    """The draws follow model time, not the window grid: lookahead (windows m times shorter) or
    window_ms must not change a run's input (one interleaved stream did: 2,255 vs 1,858 spikes
    for lookahead 1 vs 3, docs/performance.md)."""
    rates = np.random.default_rng(0).uniform(0, 80, 48)
    runs = [_cut(PoissonInput(400, 0.1, 7, 33), rates, sizes)
            for sizes in ([48], [16, 16, 16], [3] * 16, [5, 11, 1, 31])]
    assert runs[0][0].size > 10
    for t, i in runs[1:]:
        assert np.array_equal(t, runs[0][0]) and np.array_equal(i, runs[0][1])


def test_state_round_trip_continues_the_trains():
    a, b = PoissonInput(40, 0.1, 7, 33), PoissonInput(40, 0.1, 7, 33)
    a.window(np.full(16, 50.0), 0.0)
    b.state = a.state
    x, y = a.window(np.full(16, 50.0), 1.6), b.window(np.full(16, 50.0), 1.6)
    assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
    with pytest.raises(ValueError, match="older cosim"):
        b.state = {"bit_generator": "PCG64"}


def test_bad_rates_rejected():
    g = PoissonInput(5, 0.1, 0, 0)
    with pytest.raises(ValueError):
        g.window(np.array([1.0, -1.0]), 0.0)
    with pytest.raises(ValueError):
        g.window(np.array([np.nan]), 0.0)
    assert np.all(rates_from_signal(np.array([-100.0, 10.0]), 0.5, 1.0) == [0.0, 6.0])


def test_estimator_recovers_known_rates_exactly():
    dt, N, W = 0.1, 40, 16
    want = np.arange(W) * 250.0                         # Hz; 250 Hz * 40 cells * 0.1 ms = 1 spike
    counts = (want * N * dt * 1e-3).round().astype(int)
    t0 = 3.2
    # spikes on a 0.025 ms grid inside each step, including exactly at the step's end
    times = np.concatenate([t0 + s * dt + dt * (np.arange(1, c + 1) % 4 + 1) / 4 for s, c in enumerate(counts)])
    times += np.random.default_rng(0).normal(0, 1e-9, times.size)      # float drift of NEURON's clock
    r = bin_rates(times, t0, dt, W, N, tol_ms=0.0125)
    assert np.array_equal(r, want)


def test_proxy_matches_stepwise_equations_and_steady_state():
    p = RateProxy(2, 0.1, 10.0, R_e0=0.0)
    r = np.full((16, 2), 8.0)
    for _ in range(2000):                               # 3.2 s at constant 8 Hz
        out = p.advance(r)
    assert np.allclose(out["R_e"][-1], 8.0)
    ge, te = 0.641e-3, 100.0
    assert np.allclose(out["S_e"][-1], ge * 8 * te / (1 + ge * 8 * te), rtol=1e-6)
    q = RateProxy(1, 0.1, 10.0, R_e0=5.0)
    R, S = q.R_e.copy(), q.S_e.copy()
    rr = np.random.default_rng(2).random((16, 1)) * 30
    o = q.advance(rr)
    d = math.exp(-0.01)
    for i in range(16):
        R = rr[i] + (R - rr[i]) * d
        f = lambda s, R=R: -s / te + (1 - s) * ge * R   # noqa: E731
        pred = S + 0.1 * f(S)
        S = S + 0.05 * (f(S) + f(pred))
        assert np.allclose(o["R_e"][i], R, rtol=1e-12) and np.allclose(o["S_e"][i], S, rtol=1e-10)


def test_rate_proxy_euler_is_the_toolboxs_forward_euler_on_S_and_R():
    """output.integrator euler: R <- R + h/tau_r (r - R); S <- S + h(-S/tau_e + (1-S) gamma R_old),
    window by window == one step at a time (tvb-multiscale's RedWongWangExc transformer)."""
    import numpy as np
    from cosim.sdk.transformers import RateProxy
    r = np.random.default_rng(1).poisson(5, (300, 2)) * 100.0
    p = RateProxy(2, 0.1, 10.0, integrator="euler")
    out = [p.advance(r[i:i + 49]) for i in range(0, 300, 49)]
    R, S, h = np.zeros(2), np.zeros(2), 0.1
    for i in range(300):
        S, R = np.clip(S + h * (-S / 100.0 + (1 - S) * 0.641e-3 * R), 0, 1), R + h / 10.0 * (r[i] - R)
    np.testing.assert_allclose(out[-1]["S_e"][-1], S, rtol=1e-12)
    np.testing.assert_allclose(out[-1]["R_e"][-1], R, rtol=1e-12)
    assert abs(RateProxy(2, 0.1, 10.0).advance(r)["S_e"][-1] - S).max() > 1e-6     # differs from the default


def test_regular_input_matches_the_rate_without_count_noise():
    """input.process regular: each neuron fires every 1/rate exactly (phase carried across windows)."""
    import numpy as np
    from cosim.sdk.transformers import RegularInput
    g = RegularInput(50, 0.1, 1, 33)
    t, i = g.window(np.full(1000, 20.0), 0.0)                     # 100 ms at 20 Hz: 2 spikes each
    assert (np.bincount(i, minlength=50) == 2).all()
    np.testing.assert_allclose(np.diff(t[i == 3]), 50.0, atol=1e-9)
    t2, i2 = g.window(np.r_[np.zeros(10), np.full(990, 200.0)], 100.0)   # silent 1 ms, then 200 Hz
    assert t2.min() >= 101.0 and (np.bincount(i2, minlength=50) == 19).sum() + (np.bincount(i2, minlength=50) == 20).sum() == 50
