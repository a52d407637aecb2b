"""Shared layers: logical axis names on every parameter, RMSNorm, RoPE, gated MLP,
embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from musicrl.lm import AXES, Embedder, GatedMLP, RMSNorm, apply_rope, logical_axes, param
from tests.musicrl.lm.helpers import rel_err, rngs


def test_every_parameter_has_logical_names_of_its_rank(tiny_backbone):
    state = nnx.state(tiny_backbone, nnx.Param)
    names = logical_axes(tiny_backbone)
    flat = nnx.to_flat_state(state)
    assert len(flat) > 10
    for path, var in flat:
        node = names
        for key in path:
            node = node[key]
        assert isinstance(node, tuple) and len(node) == var[...].ndim, (path, node)
        assert all(n is None or n in AXES for n in node), (path, node)
        assert any(n is not None for n in node), path
    # The same names reach PartitionSpecs, what a sharding rules table consumes.
    specs = nnx.to_flat_state(nnx.get_partition_spec(state))
    for (path, var), (_, spec) in zip(flat, specs, strict=True):
        assert isinstance(spec.get_value(), PartitionSpec)
        assert tuple(spec.get_value()) == var.get_metadata()["out_sharding"], path


def test_expected_names_on_key_weights(tiny_griffin):
    names = logical_axes(tiny_griffin)["blocks"]
    assert names[0]["mix"]["linear_x"]["w"] == ("embed", "lru")
    assert names[0]["mix"]["conv"]["w"] == ("conv", "lru")
    assert names[0]["mix"]["lru"]["lam"] == ("lru",)
    assert names[2]["mix"]["attn"]["k"]["w"] == ("embed", "kv_heads", "kv")
    assert names[2]["mix"]["attn"]["o"]["w"] == ("heads", "kv", "embed")
    assert names[1]["mlp"]["down"]["w"] == ("mlp", "embed")


def test_param_refuses_wrong_names():
    with pytest.raises(ValueError, match="axis names"):
        param(jnp.zeros((2, 3)), ("embed",))
    with pytest.raises(ValueError, match="unknown logical axis"):
        param(jnp.zeros((2,)), ("width",))


def test_rmsnorm_normalises_and_scales():
    norm = RMSNorm(16)
    x = jax.random.normal(jax.random.key(0), (3, 5, 16)) * 7.0
    y = norm(x)
    np.testing.assert_allclose(np.sqrt(np.mean(np.square(y), axis=-1)), 1.0, rtol=1e-4)
    norm.scale[...] = jnp.full((16,), 1.0)  # (1 + scale) = 2
    np.testing.assert_allclose(norm(x), 2 * y, rtol=1e-5)


def test_rope_preserves_norms_and_depends_on_relative_position():
    key_q, key_k = jax.random.split(jax.random.key(0))
    q = jax.random.normal(key_q, (1, 1, 3, 8))
    k = jax.random.normal(key_k, (1, 1, 3, 8))

    def score(m, n):
        qm = apply_rope(q, jnp.array([m]), 10_000.0)
        kn = apply_rope(k, jnp.array([n]), 10_000.0)
        return jnp.sum(qm * kn, axis=-1)

    np.testing.assert_allclose(jnp.linalg.norm(apply_rope(q, jnp.array([37]), 1e4), axis=-1),
                               jnp.linalg.norm(q, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(score(5, 2), score(105, 102), rtol=1e-4, atol=1e-5)
    assert not np.allclose(score(5, 2), score(5, 3), atol=1e-3)
    # Per-batch positions broadcast like shared ones.
    both = apply_rope(jnp.concatenate([q, q]), jnp.array([[4], [9]]), 1e4)
    np.testing.assert_allclose(both[1:], apply_rope(q, jnp.array([9]), 1e4), rtol=1e-6)


@pytest.mark.parametrize("activation,act", [("swiglu", jax.nn.silu), ("geglu", jax.nn.gelu)])
def test_gated_mlp_formula(activation, act):
    mlp = GatedMLP(8, 12, activation, rngs=rngs())
    x = jax.random.normal(jax.random.key(1), (2, 3, 8))
    want = (act(x @ mlp.gate.w[...]) * (x @ mlp.up.w[...])) @ mlp.down.w[...]
    assert rel_err(mlp(x), want) <= 1e-5


def test_embedder_encode_decode_are_tied():
    emb = Embedder(10, 8, rngs=rngs())
    ids = jnp.array([[0, 3, 9]])
    x = emb.encode(ids)
    assert x.shape == (1, 3, 8)
    np.testing.assert_allclose(x, emb.table[...][ids] * np.sqrt(8), rtol=1e-6)
    logits = emb.decode(x)
    assert logits.shape == (1, 3, 10)
    np.testing.assert_allclose(logits, x @ emb.table[...].T, rtol=1e-5)
