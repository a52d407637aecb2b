"""The codec contract, the residual VQ (k-means init, EMA, dead codes, dropout)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.codec import Codec, CodecConfig
from musicrl.codec.quantizer import ResidualVQ
from musicrl.config import ConfigError, resolve


@pytest.fixture(scope="module")
def tiny_codec():
    return Codec(resolve(CodecConfig, "tiny"), rngs=nnx.Rngs(0, vq=1))


def test_contract_shapes_for_every_level_count(tiny_codec):
    c = tiny_codec
    assert (c.sample_rate, c.frame_rate, c.hop) == (16_000, 50.0, 320)
    wav = jnp.asarray(np.random.default_rng(0).standard_normal((3, 16_000 + 100)) * 0.1,
                      jnp.float32)
    codes = c.encode(wav)
    assert codes.shape == (3, 50, c.num_levels) and codes.dtype == jnp.int32
    assert int(codes.min()) >= 0 and int(codes.max()) < c.codebook_size
    for q in range(1, c.num_levels + 1):
        sub = c.encode(wav, q)
        np.testing.assert_array_equal(sub, codes[..., :q])  # levels are a prefix
        assert c.decode(sub).shape == (3, 50 * 320)


def test_forward_with_dropout_equals_encode_decode(tiny_codec):
    c = tiny_codec
    wav = jnp.asarray(np.random.default_rng(1).standard_normal((2, 6400)) * 0.1, jnp.float32)
    y, _ = c(wav, jnp.array([1, c.num_levels]), train=False)
    for i, q in enumerate((1, c.num_levels)):
        ref = c.decode(c.encode(wav[i:i + 1], q))
        np.testing.assert_allclose(np.asarray(y[i]), np.asarray(ref[0]), atol=1e-5)


def test_config_refuses_incompatible_fft():
    with pytest.raises(ConfigError, match="multiple of hop"):
        resolve(CodecConfig, "tiny", ["dec_n_fft=1000"])


def _blobs(n_per, centers, scale, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([c + scale * rng.standard_normal((n_per, centers.shape[1]))
                           for c in centers]).astype(np.float32)


def test_kmeans_init_finds_clusters():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((8, 4)) * 5
    x = _blobs(200, centers, 0.05, 1)
    vq = ResidualVQ(4, 1, 8, rngs=nnx.Rngs(0, vq=1))
    vq.kmeans_init(x, iters=30)
    cb = np.asarray(vq.codebook[...][0])
    # every true centre has a code within a small distance
    d = np.linalg.norm(centers[:, None] - cb[None], axis=-1).min(1)
    assert (d < 0.5).mean() >= 7 / 8


def test_straight_through_gradient_is_identity():
    vq = ResidualVQ(4, 2, 16, rngs=nnx.Rngs(0, vq=1))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 5, 4)), jnp.float32)
    g = jax.grad(lambda x: jnp.sum(vq(x)[0] * 3.0))(x)
    np.testing.assert_allclose(np.asarray(g), 3.0)


def test_dead_code_restarts_revive_unused_codes():
    """Codes placed far from the data are never chosen; restarts bring them into use."""
    dim, k = 4, 32
    x = _blobs(64, np.random.default_rng(3).standard_normal((16, dim)) * 2, 0.3, 4)

    def used_after(threshold: float) -> int:
        vq = ResidualVQ(dim, 1, k, decay=0.9, dead_threshold=threshold, rngs=nnx.Rngs(0, vq=1))
        far = np.full((1, k, dim), 100.0, np.float32)
        far[0, :2] = x[:2]  # only two codes near the data
        vq.codebook[...] = jnp.asarray(far)
        vq.embed_sum[...] = jnp.asarray(far)
        step = nnx.jit(lambda m, b: m(b, train=True)[1])
        for i in range(30):
            batch = jnp.asarray(x[np.random.default_rng(i).choice(len(x), 256)][None])
            step(vq, batch)
        codes = np.asarray(vq.encode(jnp.asarray(x[None])))
        return len(np.unique(codes))

    assert used_after(0.0) <= 2          # without restarts the far codes stay dead
    assert used_after(0.1) >= 24         # with restarts most codes come back
