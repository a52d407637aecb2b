"""TokenBatches: aligned crops, determinism, and the audio/text conditioning-token mix."""

from __future__ import annotations

import numpy as np
import pytest

from musicrl.lm.data import CAPTIONS_PER_CLIP, LMDataError, TokenBatches


def _corpus(n=6, m=4):
    rng = np.random.default_rng(0)
    tokens = {f"c{i}": (rng.integers(0, 16, 50), rng.integers(0, 64, (100, 3))) for i in range(n)}
    audio = {c: np.full(m, 1000 + i) for i, c in enumerate(tokens)}          # recognisable ids
    text = {c: np.arange(CAPTIONS_PER_CLIP * m).reshape(CAPTIONS_PER_CLIP, m) + 100 * i
            for i, c in enumerate(tokens) if i != 0}                         # c0 has no captions
    return tokens, audio, text


def _batches(text_prob, seed=0):
    tokens, audio, text = _corpus()
    return TokenBatches(tokens, audio, batch_size=64, seconds=1.0, levels=2, seed=seed,
                        mulan_text=text, text_prob=text_prob)


def test_crops_are_aligned_and_a_pure_function_of_seed_and_index():
    tb = _batches(0.5)
    b = tb.batch(3)
    assert b["semantic"].shape == (64, 25) and b["acoustic"].shape == (64, 50, 2)
    again = _batches(0.5).batch(3)
    for k in b:
        np.testing.assert_array_equal(b[k], again[k])
    assert not np.array_equal(b["mulan"], tb.batch(4)["mulan"])


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_text_prob_sets_the_share_of_caption_tokens(p):
    tb = _batches(p)
    mulan = np.concatenate([tb.batch(i)["mulan"] for i in range(20)])
    from_audio = mulan[:, 0] >= 1000
    with_caps = mulan[:, 0] != 1000            # clip c0 (no captions) always keeps audio tokens
    share = 1 - from_audio[with_caps].mean()
    assert share == pytest.approx(p, abs=0.05)
    if p:
        # caption rows are whole rows of that clip's text tokens, several captions used
        text_rows = mulan[~from_audio]
        assert np.all(np.diff(text_rows, axis=1) == 1)
        assert len(np.unique(text_rows[:, 0] % 100)) == CAPTIONS_PER_CLIP


def test_bad_text_prob_is_refused():
    tokens, audio, text = _corpus()
    with pytest.raises(LMDataError, match="text_prob"):
        TokenBatches(tokens, audio, batch_size=2, seconds=1.0, levels=1, mulan_text=text,
                     text_prob=1.5)
