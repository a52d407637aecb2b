"""The diversity embedder and reward: shapes, InfoNCE reference, r_D, retrieval metric."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.config import presets_of
from rewards.diversity import (
    DiversityConfig,
    DiversityEmbedder,
    DiversityError,
    DiversityReward,
    embed,
    embed_batched,
    info_nce,
    save_diversity,
)
from rewards.evaluate import chunk_retrieval


@pytest.fixture(scope="module")
def model():
    return DiversityEmbedder(presets_of(DiversityConfig)["tiny"], rngs=nnx.Rngs(0))


def test_embeddings_are_unit_vectors_and_batching_is_consistent(model):
    wav = np.random.default_rng(0).standard_normal((5, 6000)).astype(np.float32) * 0.1
    e = np.asarray(embed(model, jnp.asarray(wav)))
    assert e.shape == (5, model.cfg.dim)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embed_batched(model, wav, batch=2), e, atol=1e-5)


def test_info_nce_matches_numpy_reference():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4)).astype(np.float32)
    b = rng.standard_normal((6, 4)).astype(np.float32)
    loss, m = info_nce(jnp.asarray(a), jnp.asarray(b), jnp.asarray(np.log(5.0), jnp.float32))
    logits = 5.0 * a @ b.T

    def ce(lg):  # mean cross-entropy of the diagonal, rows as distributions
        lg = lg - lg.max(1, keepdims=True)
        return -np.mean(np.diag(lg) - np.log(np.exp(lg).sum(1)))

    assert float(loss) == pytest.approx(0.5 * (ce(logits) + ce(logits.T)), rel=1e-5)
    assert float(m["batch_acc"]) == pytest.approx(np.mean(logits.argmax(1) == np.arange(6)))


def test_reward_is_one_minus_cosine_within_prompt_groups(model, tmp_path):
    save_diversity(tmp_path / "d", model, meta={"steps": 0})
    reward = DiversityReward(tmp_path / "d")
    wav = np.random.default_rng(1).standard_normal((4, 6000)).astype(np.float32) * 0.1
    e = embed_batched(model, wav)
    pair = reward.pair(wav[:2], wav[2:])
    np.testing.assert_allclose(pair, 1 - np.sum(e[:2] * e[2:], 1), atol=1e-5)
    np.testing.assert_allclose(reward.pair(wav[:2], wav[:2]), 0.0, atol=1e-5)
    r = reward(["x", "x", "y", "z"], wav)
    np.testing.assert_allclose(r[:2], 1 - e[0] @ e[1], atol=1e-5)
    assert r[2] == 0 and r[3] == 0  # no other generation of that prompt
    with pytest.raises(DiversityError, match="prompts for"):
        reward(["x"], wav)


def test_chunk_retrieval_perfect_random_and_pieces():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((40, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert chunk_retrieval(e, e, None, 10)["top1"] == 1.0
    m = chunk_retrieval(e, rng.permutation(e), None, 10)
    assert m["chance"] == pytest.approx(1 / 11) and m["top1"] < 0.5
    pieces = [str(i // 20) for i in range(40)]  # two pieces of 20 clips
    assert chunk_retrieval(e, e, pieces, 19)["pool"] == 20  # distractors from the other piece
