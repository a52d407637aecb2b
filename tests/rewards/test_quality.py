"""The quality model: score range, invariances, losses against numpy references, loading."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.config import presets_of
from rewards.quality import (
    QualityConfig,
    QualityError,
    QualityModel,
    QualityReward,
    better_matrix,
    load_quality,
    rank_loss,
    save_quality,
    score_batched,
)


@pytest.fixture(scope="module")
def model():
    return QualityModel(presets_of(QualityConfig)["tiny"], rngs=nnx.Rngs(0))


def test_scores_are_in_1_5_and_gain_invariant(model):
    rng = np.random.default_rng(0)
    wav = np.concatenate([rng.standard_normal((3, 8000)) * 0.1, np.zeros((1, 8000)),
                          rng.standard_normal((1, 8000)) * 50]).astype(np.float32)
    s = score_batched(model, wav, batch=4)
    assert s.shape == (5,) and np.all((s >= 1) & (s <= 5))
    s2 = score_batched(model, wav[:3] * 3.0, batch=4)
    np.testing.assert_allclose(s2, s[:3], atol=1e-3)  # log-mel level is removed per clip


def test_rank_loss_matches_numpy_reference():
    rng = np.random.default_rng(0)
    score = rng.uniform(1, 5, 8).astype(np.float32)
    group = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    better = rng.random((8, 8)) < 0.5
    got = float(rank_loss(jnp.asarray(score), jnp.asarray(group), jnp.asarray(better), 3.0))
    terms = [np.log1p(np.exp(-3.0 * (score[i] - score[j])))
             for i in range(8) for j in range(8) if better[i, j] and group[i] == group[j]]
    assert got == pytest.approx(np.mean(terms), rel=1e-5)


def test_better_matrix_orders_clean_and_same_family_only():
    fam = np.array([-1, 0, 0, 1])
    sev = np.array([0.0, 0.2, 0.6, 0.4], np.float32)
    b = better_matrix(fam, sev)
    assert b[0, 1] and b[0, 2] and b[0, 3]  # clean beats everything
    assert b[1, 2] and not b[2, 1]          # milder beats harsher in one family
    assert not b[1, 3] and not b[3, 2]      # different families are not ordered
    assert not b.diagonal().any()


def test_save_load_and_reward(model, tmp_path):
    save_quality(tmp_path / "q", model, meta={"steps": 0})
    loaded, meta = load_quality(tmp_path / "q")
    wav = np.random.default_rng(1).standard_normal((3, 4000)).astype(np.float32) * 0.1
    np.testing.assert_allclose(score_batched(loaded, wav), score_batched(model, wav), atol=1e-6)
    r = QualityReward(tmp_path / "q")(["a", "b", "c"], wav)
    assert r.shape == (3,) and r.dtype == np.float32 and np.all((r >= 0) & (r <= 1))
    np.testing.assert_allclose(r, (score_batched(model, wav) - 1) / 4, atol=1e-6)


def test_load_refuses_missing_or_foreign_weights(tmp_path):
    with pytest.raises(QualityError, match="no quality weights"):
        load_quality(tmp_path / "nothing")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "meta.json").write_text(json.dumps({"component": "codec"}))
    with pytest.raises(QualityError, match="not a quality model"):
        load_quality(tmp_path / "x")


def test_frequency_branch_keeps_range_and_gain_invariance():
    import dataclasses

    cfg = dataclasses.replace(presets_of(QualityConfig)["tiny"], freq_widths=(4, 4))
    m = QualityModel(cfg, rngs=nnx.Rngs(1))
    wav = np.random.default_rng(0).standard_normal((3, 8000)).astype(np.float32) * 0.1
    s = score_batched(m, wav)
    assert np.all((s >= 1) & (s <= 5))
    np.testing.assert_allclose(score_batched(m, 2.0 * wav), s, atol=1e-3)
