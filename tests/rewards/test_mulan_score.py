"""The MuLan-score reward: cos(text, audio) per row, long clips on averaged windows."""

from __future__ import annotations

import numpy as np
import pytest

from musicrl.mulan import embed_audio_long, embed_prompts_batched
from musicrl.testing import tiny_bundle
from rewards.mulan_score import MulanReward


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
    return MulanReward(tiny_bundle(tmp_path_factory.mktemp("b")) / "mulan")


def test_reward_is_cosine_of_text_and_audio(reward):
    rng = np.random.default_rng(0)
    wav = 0.1 * rng.standard_normal((3, 40_000)).astype(np.float32)  # 2.5 s: several windows
    prompts = ["a calm piano piece", "fast drums", "a sad waltz"]
    r = reward(prompts, wav)
    assert r.shape == (3,) and r.dtype == np.float32 and np.all(np.abs(r) <= 1 + 1e-5)
    t = embed_prompts_batched(reward.model, prompts)
    a = embed_audio_long(reward.model, wav)
    np.testing.assert_allclose(r, np.sum(t * a, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="prompts for"):
        reward(prompts[:2], wav)
