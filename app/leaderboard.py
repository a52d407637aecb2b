"""Bradley–Terry leaderboard from arena votes (DESIGN §11), with bootstrap intervals.

Model: system i beats system j with probability p_i / (p_i + p_j) (Bradley & Terry 1952).

* **Outcomes**: ``a``/``b`` is a win for that side; ``tie`` counts as half a win each way;
  ``both_bad`` says nothing about which is better and is dropped from the fit (it is still
  counted in ``both_bad`` and ``votes``). A pair of a system against itself is dropped too.
* **Fit**: maximum likelihood by Newton's method on log-strengths (the logistic form of
  the model; Hunter 2004, Ann. Statist. 32(1) §1), with a tiny prior: every system also
  plays ``prior_games`` virtual games against a fixed reference of strength 1, winning
  half. The prior keeps the estimate finite when a system won (or lost) every game and
  pins the scale; with hundreds of votes its pull is negligible.
* **Scale** (Elo-like): ``score = 1000 + 400 · log10(p_i / g)`` where g is the geometric
  mean strength, so the mean score is 1000 and a 400-point gap means 10:1 odds of winning
  (a 100-point gap ≈ 64%).
* **Intervals**: percentile bootstrap — votes are resampled with replacement ``rounds``
  times (seeded), refitted, and the (α/2, 1−α/2) quantiles of each score reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ELO_BASE", "ELO_SCALE", "bradley_terry", "leaderboard", "win_matrix"]

ELO_BASE = 1000.0
ELO_SCALE = 400.0
_OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5}


def _field(v: Any, name: str) -> Any:
    return v[name] if isinstance(v, Mapping) else getattr(v, name)


def _parse(votes: Iterable[Any]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict]:
    """Returns systems, arrays (i, j, score of i) of the fitted votes, and raw counts."""
    rows = [(_field(v, "system_a"), _field(v, "system_b"), _field(v, "choice")) for v in votes]
    systems = sorted({s for a, b, _ in rows for s in (a, b)})
    idx = {s: k for k, s in enumerate(systems)}
    counts = {s: {"votes": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0} for s in systems}
    ii, jj, yy = [], [], []
    for a, b, c in rows:
        for s in {a, b}:
            counts[s]["votes"] += 1
        if c == "both_bad":
            for s in {a, b}:
                counts[s]["both_bad"] += 1
            continue
        if c not in _OUTCOME:
            raise ValueError(f"unknown vote choice {c!r}; expected a, b, tie or both_bad")
        if a == b:
            continue
        y = _OUTCOME[c]
        if y == 0.5:
            counts[a]["ties"] += 1
            counts[b]["ties"] += 1
        else:
            counts[a if y else b]["wins"] += 1
            counts[b if y else a]["losses"] += 1
        ii.append(idx[a])
        jj.append(idx[b])
        yy.append(y)
    return (systems, np.asarray(ii, np.int64), np.asarray(jj, np.int64),
            np.asarray(yy, np.float64), counts)


def bradley_terry(i: np.ndarray, j: np.ndarray, y: np.ndarray, n: int, *,
                  weights: np.ndarray | None = None, prior_games: float = 0.5,
                  iters: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry strengths (Newton's method on log-strengths).

    The log-likelihood with the virtual-game prior is strictly concave in θ = ln p, so
    Newton steps (with step halving as a guard) converge in a handful of iterations.

    Args:
      i, j: [m] indices of the two systems of each game.
      y: [m] score of i in each game (1 win, 0.5 tie, 0 loss).
      n: number of systems.
      weights: [m] multiplicity of each game (the bootstrap passes resample counts).
      prior_games: virtual games (half won) of each system against a reference of strength 1.

    Returns:
      [n] strengths p (positive), on the scale fixed by the reference.
    """
    w = np.ones_like(y) if weights is None else weights
    wins = np.zeros((n, n))                     # wins[r, c]: score of r against c
    np.add.at(wins, (i, j), w * y)
    np.add.at(wins, (j, i), w * (1 - y))
    games = wins + wins.T
    half = prior_games / 2

    def objective(t: np.ndarray) -> float:
        d = t[:, None] - t[None, :]
        return float(-(wins * np.logaddexp(0, -d)).sum()
                     - half * (np.logaddexp(0, -t) + np.logaddexp(0, t)).sum())

    theta = np.zeros(n)
    f = objective(theta)
    for _ in range(iters):
        q = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))   # P(r beats c)
        r = 1 / (1 + np.exp(-theta))                                 # P(beats the reference)
        grad = (wins - games * q).sum(1) + half - prior_games * r
        c = games * q * (1 - q)
        hess = c - np.diag(c.sum(1) + prior_games * r * (1 - r))     # negative definite
        step = np.linalg.solve(hess, -grad)
        t = 1.0
        while True:
            cand = theta + t * step
            fc = objective(cand)
            if fc >= f - 1e-12 or t < 1e-6:
                break
            t /= 2
        done = np.max(np.abs(cand - theta)) < tol
        theta, f = cand, fc
        if done:
            break
    return np.exp(theta)


def _elo(p: np.ndarray) -> np.ndarray:
    logp = np.log10(p)
    return ELO_BASE + ELO_SCALE * (logp - logp.mean(axis=-1, keepdims=True))


def win_matrix(votes: Iterable[Any]) -> dict[str, Any]:
    """``{"systems": [...], "wins": M}`` with M[r][c] = wins of row over column (ties ½).

    ``both_bad`` votes and self-pairs are left out, as in the fit.
    """
    systems, i, j, y, _ = _parse(votes)
    n = len(systems)
    m = np.zeros((n, n))
    np.add.at(m, (i, j), y)
    np.add.at(m, (j, i), 1 - y)
    return {"systems": systems, "wins": m.tolist()}


def leaderboard(votes: Sequence[Any], *, rounds: int = 200, seed: int = 0,
                confidence: float = 0.95, prior_games: float = 0.5) -> list[dict]:
    """The leaderboard table, best first.

    Args:
      votes: objects or mappings with ``system_a``, ``system_b``, ``choice`` (e.g.
        ``store.votes()``).
      rounds: bootstrap resamples (0 disables the intervals: ``ci_low/high`` are None).
      seed: bootstrap seed (the table is deterministic for a seed).
      confidence: coverage of the interval.
      prior_games: see :func:`bradley_terry`.

    Returns:
      One dict per system: ``rank, system, score, ci_low, ci_high, votes, wins, losses,
      ties, both_bad, win_rate`` (wins + ties/2 over decisive-or-tied games; None if none).
    """
    systems, i, j, y, counts = _parse(votes)
    n = len(systems)
    if n == 0:
        return []
    score = _elo(bradley_terry(i, j, y, n, prior_games=prior_games))
    lo = hi = [None] * n
    if rounds > 0 and len(y):
        rng = np.random.default_rng(seed)
        m = len(y)
        boot = np.empty((rounds, n))
        for r in range(rounds):
            w = np.bincount(rng.integers(0, m, m), minlength=m).astype(np.float64)
            boot[r] = _elo(bradley_terry(i, j, y, n, weights=w, prior_games=prior_games))
        alpha = (1 - confidence) / 2
        lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
        lo, hi = lo.tolist(), hi.tolist()
    table = []
    for k, s in enumerate(systems):
        c = counts[s]
        played = c["wins"] + c["losses"] + c["ties"]
        table.append({"system": s, "score": float(score[k]), "ci_low": lo[k], "ci_high": hi[k],
                      **c, "win_rate": (c["wins"] + c["ties"] / 2) / played if played else None})
    table.sort(key=lambda r: (-r["score"], r["system"]))
    for rank, row in enumerate(table, 1):
        row["rank"] = rank
    return [{"rank": r.pop("rank"), **r} for r in table]
