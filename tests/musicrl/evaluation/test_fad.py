"""FAD: the matrix square root, the closed forms, and the sampling protocols."""

from __future__ import annotations

import numpy as np
import pytest

from musicrl.evaluation.fad import (
    fad,
    fad_fixed,
    fad_infinity,
    frechet_distance,
    gaussian_stats,
    standardize,
)
from musicrl.evaluation.features import DIM, embed_handcrafted


def _random_orthogonal(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_identical_sets_give_zero():
    x = np.random.default_rng(0).normal(size=(200, 16))
    assert fad(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fad(x, x) >= 0.0


def test_diagonal_closed_form():
    rng = np.random.default_rng(1)
    d = 12
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.01, 5, d), rng.uniform(0.01, 5, d)
    want = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu_a, np.diag(a), mu_b, np.diag(b))
    assert got == pytest.approx(want, rel=1e-10)


def test_commuting_closed_form_non_diagonal():
    # Σ_a, Σ_b sharing an eigenbasis Q: FD = Σ (√a_i − √b_i)² exactly.
    rng = np.random.default_rng(2)
    d = 20
    q = _random_orthogonal(rng, d)
    a, b = rng.uniform(0.0, 3, d), rng.uniform(0.0, 3, d)
    a[:5] = 0.0  # singular
    cov_a, cov_b = (q * a) @ q.T, (q * b) @ q.T
    want = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(np.zeros(d), cov_a, np.zeros(d), cov_b) == pytest.approx(
        want, rel=1e-8, abs=1e-9)


def test_general_matches_scipy_on_well_conditioned():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    mu_a, cov_a = gaussian_stats(x)
    mu_b, cov_b = gaussian_stats(y)
    ref = (np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
           - 2 * np.trace(sqrtm(cov_a @ cov_b).real))
    assert frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_never_negative_on_near_singular(seed):
    # Fewer samples than dimensions: rank-deficient covariances, eigenvalues ≈ 0 (and
    # slightly negative in float). Two draws of the same distribution, and a set with itself.
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(64, 5)) @ rng.normal(size=(5, 64)) * 1e3
    x = base[:30] + 1e-9 * rng.normal(size=(30, 64))
    assert fad(x, x) >= 0.0
    assert fad(x, x + 1e-12) >= 0.0
    assert fad(x, base[30:60]) >= 0.0


def test_grows_with_mean_shift():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(400, 10)), rng.normal(size=(400, 10))
    vals = [fad(x, y + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(vals, vals[1:], strict=False))
    # A shift s in every one of d dimensions adds ≈ d·s².
    assert vals[3] - vals[0] == pytest.approx(10 * 4.0, rel=0.1)


def test_fixed_protocol_is_seeded_and_bias_shrinks_with_n():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(500, 6)), rng.normal(size=(500, 6))
    r1, r2 = fad_fixed(x, y, n=50, repeats=4, seed=1), fad_fixed(x, y, n=50, repeats=4, seed=1)
    assert r1 == r2 and len(r1.values) == 4 and r1.std > 0
    big = fad_fixed(x, y, n=400, repeats=4, seed=1)
    assert big.mean < r1.mean  # same distribution: FAD is all small-sample bias
    with pytest.raises(ValueError, match="lower n"):
        fad_fixed(x, y, n=501)


def test_fad_infinity_extrapolates_below_finite_n():
    rng = np.random.default_rng(6)
    ref, same, shifted = (rng.normal(size=(600, 6)), rng.normal(size=(300, 6)),
                          rng.normal(size=(300, 6)) + 1.0)
    inf_same = fad_infinity(ref, same, repeats=3)
    inf_shift = fad_infinity(ref, shifted, repeats=3)
    assert inf_same.slope > 0 and inf_same.fad_inf < min(inf_same.means)
    assert abs(inf_same.fad_inf) < 0.1
    assert inf_shift.fad_inf == pytest.approx(6.0, rel=0.15)  # |Δμ|² = 6


def test_handcrafted_embedding_separates_noise_from_tones():
    sr = 16_000
    t = np.arange(sr) / sr
    rng = np.random.default_rng(7)
    tones = [0.3 * np.sin(2 * np.pi * f * t) for f in rng.uniform(200, 800, 12)]
    noise = [0.3 * rng.normal(size=sr) for _ in range(12)]
    e_t, e_n = embed_handcrafted(tones), embed_handcrafted(noise)
    assert e_t.shape == (12, DIM) and np.isfinite(e_t).all()
    z_t, z_n = standardize(e_t, e_t), standardize(e_n, e_t)
    half = standardize(e_t[6:], e_t)
    assert fad(z_t[:6], half) < fad(z_t[:6], z_n[:6])
