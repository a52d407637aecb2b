"""Codebook patterns: round trips, the exact delay/flatten layouts, validity masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musicrl.lm import DelayPattern, FlattenPattern, make_pattern

PAD = 1024


def _codes(b, t, k, seed=0):
    return np.random.default_rng(seed).integers(0, PAD, (b, t, k)).astype(np.int32)


@pytest.mark.parametrize("name", ["delay", "flatten"])
@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("t", [1, 3, 17])
def test_build_then_revert_is_identity(name, k, t):
    pattern = make_pattern(name, k, PAD)
    codes = _codes(3, t, k, seed=k * 100 + t)
    seq = pattern.build(codes)
    assert seq.shape == (3, pattern.steps_for(t), pattern.tokens_per_step)
    assert pattern.frames_for(seq.shape[1]) == t
    np.testing.assert_array_equal(pattern.revert(seq), codes)


@pytest.mark.parametrize("name", ["delay", "flatten"])
def test_jax_arrays_under_jit_match_numpy(name):
    pattern = make_pattern(name, 4, PAD)
    codes = _codes(2, 9, 4)
    seq_j = jax.jit(pattern.build)(jnp.asarray(codes))
    np.testing.assert_array_equal(np.asarray(seq_j), pattern.build(codes))
    np.testing.assert_array_equal(np.asarray(jax.jit(pattern.revert)(seq_j)), codes)


def test_delay_layout_is_musicgen():
    k, t = 4, 6
    codes = _codes(2, t, k)
    pattern = DelayPattern(k, PAD)
    seq = pattern.build(codes)
    assert seq.shape == (2, t + k - 1, k)
    for s in range(t + k - 1):
        for q in range(k):
            want = codes[:, s - q, q] if 0 <= s - q < t else np.full(2, PAD)
            np.testing.assert_array_equal(seq[:, s, q], want)
    valid = pattern.layout(t).valid
    assert valid.sum() == t * k and (~valid).sum() == k * (k - 1)
    np.testing.assert_array_equal(valid[0], [True, False, False, False])
    np.testing.assert_array_equal(valid[-1], [False, False, False, True])
    np.testing.assert_array_equal(pattern.layout(t).level[3], np.arange(k))


def test_flatten_layout_is_frame_major():
    k, t = 3, 4
    codes = _codes(2, t, k)
    pattern = FlattenPattern(k, PAD)
    seq = pattern.build(codes)
    assert seq.shape == (2, t * k, 1)
    np.testing.assert_array_equal(seq[:, :, 0], codes.reshape(2, t * k))
    lay = pattern.layout(t)
    assert lay.valid.all()
    np.testing.assert_array_equal(lay.level[:, 0], np.tile(np.arange(k), t))
    np.testing.assert_array_equal(lay.frame[:, 0], np.repeat(np.arange(t), k))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="levels"):
        DelayPattern(4, PAD).build(_codes(1, 5, 3))
    with pytest.raises(ValueError, match="tokens per step"):
        DelayPattern(4, PAD).revert(np.zeros((1, 8, 2), np.int32))
    with pytest.raises(ValueError, match="not a complete sequence"):
        FlattenPattern(4, PAD).revert(np.zeros((1, 10, 1), np.int32))
    with pytest.raises(ValueError, match="unknown token pattern"):
        make_pattern("interleave", 4, PAD)
