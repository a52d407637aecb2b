"""Fréchet audio distance (FAD) between two sets of clip embeddings.

FAD (Kilgour et al., 2019) fits a Gaussian to each set of embeddings and
returns the Fréchet (2-Wasserstein) distance between them::

    FAD = |μ_a − μ_b|² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^½ Σ_b Σ_a^½)^½

The cross term is computed in its symmetric form: Σ_a^½ from an eigen-
decomposition of Σ_a with negative eigenvalues (round-off) clipped to zero,
then the eigenvalues of the symmetric PSD matrix Σ_a^½ Σ_b Σ_a^½, clipped
likewise, whose square roots sum to the trace. Unlike ``sqrtm(Σ_a Σ_b)`` this
never goes complex; all in float64, and the result is clipped at 0 (tiny
negatives are round-off), so FAD is never negative.

FAD is biased upwards at small sample sizes, so numbers are only comparable at
the same n. Two protocols:

* :func:`fad_fixed` — n clips drawn without replacement from each side, k
  times (seeds), reported as mean ± std;
* :func:`fad_infinity` — FAD∞ (Chung et al., 2024, after Chong & Forsyth's
  FID∞): FAD of the full reference against n-clip draws of the other side at
  several n, a line fitted in 1/n, and its intercept at 1/n → 0.

Embeddings come from any ``embed(wavs) -> [n, d]``; the default is the fixed
``handcrafted-v1`` features (:mod:`musicrl.evaluation.features`), standardized
with the reference set's mean and std. Every report names its embedding.

Dimension legend: ``n`` clips, ``d`` embedding width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["Embed", "gaussian_stats", "frechet_distance", "fad", "standardize",
           "FadResult", "fad_fixed", "FadInfinity", "fad_infinity"]

Embed = Callable[[Sequence[np.ndarray]], np.ndarray]
"""``embed(wavs) -> [n, d]``: one embedding per clip (16 kHz mono float32)."""


def gaussian_stats(emb_nd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [d] and (unbiased) covariance [d, d] of embeddings [n, d], float64."""
    x = np.asarray(emb_nd, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need embeddings [n ≥ 2, d], got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(s_dd: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (nearly) PSD matrix; negative eigenvalues → 0."""
    w, v = np.linalg.eigh((s_dd + s_dd.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray,
                     cov_b: np.ndarray) -> float:
    """Fréchet distance between N(μ_a, Σ_a) and N(μ_b, Σ_b); always ≥ 0."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    root_a = _psd_sqrt(cov_a)
    m = root_a @ cov_b @ root_a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    cross = np.sqrt(np.clip(eig, 0.0, None)).sum()
    d = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)
    return max(d, 0.0)


def fad(emb_a: np.ndarray, emb_b: np.ndarray) -> float:
    """FAD between two embedding sets [n_a, d] and [n_b, d] (all rows used)."""
    return frechet_distance(*gaussian_stats(emb_a), *gaussian_stats(emb_b))


def standardize(emb_nd: np.ndarray, ref_nd: np.ndarray) -> np.ndarray:
    """Z-scores ``emb`` with the reference set's per-dimension mean and std.

    A fixed linear map applied to both sides, so that no feature dominates the
    distance by its units alone.
    """
    ref = np.asarray(ref_nd, np.float64)
    return (np.asarray(emb_nd, np.float64) - ref.mean(0)) / (ref.std(0) + 1e-8)


@dataclasses.dataclass(frozen=True)
class FadResult:
    """FAD at a fixed sample size: mean ± std over ``repeats`` draws."""

    mean: float
    std: float
    values: tuple[float, ...]
    n: int
    repeats: int

    def row(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f} (n={self.n}, {self.repeats} draws)"


def _draw(rng: np.random.Generator, x: np.ndarray, n: int) -> np.ndarray:
    if n > len(x):
        raise ValueError(f"asked for {n} clips per draw but a set has only {len(x)}; "
                         f"lower n")
    return x[rng.choice(len(x), n, replace=False)]


def fad_fixed(emb_a: np.ndarray, emb_b: np.ndarray, n: int, repeats: int = 3,
              seed: int = 0) -> FadResult:
    """FAD of n clips from each side, drawn without replacement, ``repeats`` times.

    Draw ``r`` uses ``default_rng([seed, r])``, so adding repeats keeps the
    earlier draws.
    """
    if n < 2 or repeats < 1:
        raise ValueError("need n ≥ 2 and repeats ≥ 1")
    vals = []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        vals.append(fad(_draw(rng, emb_a, n), _draw(rng, emb_b, n)))
    v = np.array(vals)
    return FadResult(float(v.mean()), float(v.std()), tuple(map(float, v)), n, repeats)


@dataclasses.dataclass(frozen=True)
class FadInfinity:
    """FAD∞: intercept of FAD(n) = fad_inf + slope / n, fitted over draws."""

    fad_inf: float
    slope: float
    ns: tuple[int, ...]
    means: tuple[float, ...]   # mean FAD at each n

    def row(self) -> str:
        return (f"FAD∞ {self.fad_inf:.3f} (slope {self.slope:.1f}/n, n from {min(self.ns)} "
                f"to {max(self.ns)})")


def fad_infinity(emb_ref: np.ndarray, emb_eval: np.ndarray,
                 ns: Sequence[int] | None = None, repeats: int = 3,
                 seed: int = 0) -> FadInfinity:
    """FAD∞ of ``emb_eval`` against the whole reference set.

    The reference statistics use every reference row; the evaluated side is
    drawn at each n in ``ns`` (default: 10 sizes from n_eval/5 to n_eval).
    The intercept is reported as is (it may be slightly negative when the sets
    are indistinguishable: it is an extrapolation, not a distance).
    """
    n_eval = len(emb_eval)
    if ns is None:
        ns = np.unique(np.linspace(max(n_eval // 5, 2), n_eval, 10).astype(int))
    ns = tuple(int(n) for n in ns)
    stats_ref = gaussian_stats(emb_ref)
    xs, ys, means = [], [], []
    for n in ns:
        vals = []
        for r in range(repeats):
            rng = np.random.default_rng([seed, n, r])
            vals.append(frechet_distance(*stats_ref, *gaussian_stats(_draw(rng, emb_eval, n))))
        xs += [1.0 / n] * len(vals)
        ys += vals
        means.append(float(np.mean(vals)))
    if len(set(ns)) < 2:
        raise ValueError("FAD∞ needs at least two sample sizes")
    slope, intercept = np.polyfit(np.array(xs), np.array(ys), 1)
    return FadInfinity(float(intercept), float(slope), ns, tuple(means))
