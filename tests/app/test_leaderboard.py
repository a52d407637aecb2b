"""Bradley–Terry leaderboard: recovers known strengths, intervals cover them, vote rules."""

from __future__ import annotations

import numpy as np
import pytest

from app.leaderboard import ELO_SCALE, bradley_terry, leaderboard, win_matrix

TRUE = {"alpha": 1200.0, "beta": 1100.0, "gamma": 1000.0, "delta": 950.0, "eps": 900.0,
        "zeta": 850.0}


def _simulate(n: int, seed: int, both_bad: float = 0.0) -> list[dict]:
    """Votes drawn from the Bradley–Terry model with the TRUE Elo-scale strengths."""
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    votes = []
    for _ in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        sa, sb = names[a], names[b]
        p_a = 1 / (1 + 10 ** ((TRUE[sb] - TRUE[sa]) / ELO_SCALE))
        choice = "a" if rng.random() < p_a else "b"
        if rng.random() < both_bad:
            choice = "both_bad"  # independent of strength: carries no information
        votes.append({"system_a": sa, "system_b": sb, "choice": choice})
    return votes


def _centred_truth() -> dict[str, float]:
    mean = np.mean(list(TRUE.values()))
    return {k: v - mean + 1000.0 for k, v in TRUE.items()}


def test_recovers_known_strengths_and_intervals_cover_them():
    truth = _centred_truth()
    votes = _simulate(4000, seed=3, both_bad=0.05)
    table = leaderboard(votes, rounds=300, seed=0)
    assert [r["system"] for r in table] == list(TRUE)  # sorted best first, true order
    assert [r["rank"] for r in table] == list(range(1, 7))
    for r in table:
        assert abs(r["score"] - truth[r["system"]]) < 35, r
        assert r["ci_low"] <= truth[r["system"]] <= r["ci_high"], r
        assert r["ci_low"] < r["score"] < r["ci_high"]
        assert 10 < r["ci_high"] - r["ci_low"] < 100
    n_bad = sum(v["choice"] == "both_bad" for v in votes)
    assert n_bad > 100 and sum(r["both_bad"] for r in table) == 2 * n_bad  # once per side
    assert sum(r["votes"] for r in table) == 2 * len(votes)
    assert np.mean([r["score"] for r in table]) == pytest.approx(1000.0)


def test_interval_coverage_is_near_nominal():
    truth = _centred_truth()
    covered = []
    for seed in range(8):
        for r in leaderboard(_simulate(1200, seed=100 + seed), rounds=100, seed=seed):
            covered.append(r["ci_low"] <= truth[r["system"]] <= r["ci_high"])
    assert np.mean(covered) >= 0.85  # nominal 0.95; 48 intervals


def test_more_votes_narrow_the_intervals():
    few = {r["system"]: r["ci_high"] - r["ci_low"] for r in leaderboard(_simulate(300, 5))}
    many = {r["system"]: r["ci_high"] - r["ci_low"] for r in leaderboard(_simulate(3000, 5))}
    assert all(many[s] < few[s] for s in TRUE)


def test_elo_scale_400_points_is_ten_to_one():
    votes = [{"system_a": "x", "system_b": "y", "choice": "a"}] * 1000 + \
            [{"system_a": "y", "system_b": "x", "choice": "a"}] * 100
    s = {r["system"]: r["score"] for r in leaderboard(votes, rounds=0)}
    assert s["x"] - s["y"] == pytest.approx(400, abs=2)
    assert s["x"] + s["y"] == pytest.approx(2000)


def test_ties_count_half_each_way():
    tie = [{"system_a": "x", "system_b": "y", "choice": "tie"}]
    win = [{"system_a": "x", "system_b": "y", "choice": "a"}]
    loss = [{"system_a": "y", "system_b": "x", "choice": "a"}]
    # Two ties weigh exactly like one win and one loss.
    base = win * 30 + loss * 10
    with_ties = leaderboard(base + tie * 20, rounds=0)
    with_split = leaderboard(base + win * 10 + loss * 10, rounds=0)
    assert [r["score"] for r in with_ties] == pytest.approx([r["score"] for r in with_split])
    equal = leaderboard(tie * 10, rounds=0)
    assert equal[0]["score"] == pytest.approx(equal[1]["score"])
    assert equal[0]["ties"] == 10 and equal[0]["win_rate"] == 0.5


def test_both_bad_is_dropped_from_the_fit_but_counted():
    votes = _simulate(500, seed=9)
    bad = [{"system_a": "alpha", "system_b": "zeta", "choice": "both_bad"}] * 50
    plain = leaderboard(votes, rounds=0)
    more = leaderboard(votes + bad, rounds=0)
    assert [r["score"] for r in plain] == pytest.approx([r["score"] for r in more])
    by = {r["system"]: r for r in more}
    assert by["alpha"]["both_bad"] == 50 and by["beta"]["both_bad"] == 0
    assert by["alpha"]["votes"] == {r["system"]: r for r in plain}["alpha"]["votes"] + 50


def test_unbeaten_system_stays_finite_and_single_votes_work():
    table = leaderboard([{"system_a": "x", "system_b": "y", "choice": "a"}] * 5, rounds=20)
    assert all(np.isfinite(r["score"]) for r in table)
    assert table[0]["system"] == "x" and table[0]["wins"] == 5 and table[1]["losses"] == 5
    assert leaderboard([]) == []
    only_bad = leaderboard([{"system_a": "x", "system_b": "y", "choice": "both_bad"}])
    assert [r["score"] for r in only_bad] == [1000.0, 1000.0]
    with pytest.raises(ValueError, match="choice"):
        leaderboard([{"system_a": "x", "system_b": "y", "choice": "maybe"}])


def test_bootstrap_is_seeded():
    votes = _simulate(400, seed=2)
    assert leaderboard(votes, rounds=50, seed=7) == leaderboard(votes, rounds=50, seed=7)
    assert leaderboard(votes, rounds=50, seed=7) != leaderboard(votes, rounds=50, seed=8)


def test_win_matrix():
    votes = [{"system_a": "x", "system_b": "y", "choice": "a"},
             {"system_a": "y", "system_b": "x", "choice": "a"},
             {"system_a": "y", "system_b": "x", "choice": "a"},
             {"system_a": "x", "system_b": "z", "choice": "tie"},
             {"system_a": "x", "system_b": "z", "choice": "both_bad"}]
    m = win_matrix(votes)
    assert m["systems"] == ["x", "y", "z"]
    assert m["wins"] == [[0, 1, 0.5], [2, 0, 0], [0.5, 0, 0]]


def test_newton_fit_matches_the_likelihood_optimum():
    # At the optimum the gradient of the (prior-regularised) log-likelihood vanishes.
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    keep = i != j
    i, j = i[keep], j[keep]
    y = rng.choice([0.0, 0.5, 1.0], size=len(i))
    p = bradley_terry(i, j, y, 4, prior_games=0.5)
    th = np.log(p)
    q = 1 / (1 + np.exp(-(th[i] - th[j])))
    grad = np.bincount(i, y - q, minlength=4) - np.bincount(j, y - q, minlength=4)
    grad += 0.25 - 0.5 / (1 + np.exp(-th))
    assert np.max(np.abs(grad)) < 1e-8
