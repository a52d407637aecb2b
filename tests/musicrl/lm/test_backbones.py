"""Both backbones: cached decoding equals the full forward pass, fixed-size Griffin state,
MQA/GQA grouping, RG-LRU initialisation and scans, jit + while_loop, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicrl.config import ConfigError, resolve
from musicrl.lm import BackboneConfig, Griffin, Transformer, make_backbone
from musicrl.lm.griffin import RGLRU, lru_scan
from tests.musicrl.lm.helpers import build, rel_err, rngs, tiny_cfg

B, T = 2, 24  # 24 positions = 3 windows of the tiny Griffin: the ring buffer wraps twice


def _x(t: int = T, d: int = 32, seed: int = 1) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (B, t, d), jnp.float32)


@nnx.jit
def _run(model, x, cache):
    return model(x, cache=cache)


@nnx.jit
def _full(model, x):
    return model(x)[0]


def _decode(model, x, chunks):
    """Feeds ``x`` in chunks of the given sizes, then one position at a time."""
    cache = model.init_cache(x.shape[0], x.shape[1])
    outs, i = [], 0
    for n in chunks:
        y, cache = _run(model, x[:, i:i + n], cache)
        outs.append(y)
        i += n
    while i < x.shape[1]:
        y, cache = _run(model, x[:, i:i + 1], cache)
        outs.append(y)
        i += 1
    assert int(cache.pos) == x.shape[1]
    return jnp.concatenate(outs, axis=1), cache


def test_prefill_then_decode_equals_full_forward(tiny_backbone):
    model, x = tiny_backbone, _x()
    shape, none = nnx.eval_shape(lambda m, x: m(x), model, x)
    assert none is None and shape.shape == x.shape
    full = _full(model, x)
    # One prefill chunk; two chunks, the second longer than Griffin's window (8).
    for chunks in ([5], [3, 12]):
        y, _ = _decode(model, x, chunks)
        assert rel_err(y, full) <= 1e-5, (chunks, rel_err(y, full))


@pytest.mark.parametrize("kind", ["transformer", "griffin"])
def test_mqa_prefill_then_decode(kind):
    """MQA (one kv head, as in Griffin's paper); Griffin here uses the sequential scan."""
    model = build(kind, "kv_heads=1", "lru_scan=linear", seed=1)
    x = _x(seed=2)
    full = _full(model, x)
    y, _ = _decode(model, x, [3, 12])
    assert rel_err(y, full) <= 1e-5


def test_griffin_state_is_fixed_size_and_works_far_out(tiny_griffin):
    model, x = tiny_griffin, _x()
    w = model.cfg.window
    _, cache24 = _decode(model, x, [5])
    # No buffer is indexed by absolute position, so moving the counter stands for
    # ~10,000 more steps (by a multiple of the window: the ring's slots keep their
    # meaning); then run real steps there, past a full wrap of the ring.
    far = cache24.replace(pos=cache24.pos + w * (10_000 // w))
    y_near, near_end = _steps(model, x[:, :w + 5], cache24)
    y_far, far_end = _steps(model, x[:, :w + 5], far)
    assert int(far_end.pos) == int(near_end.pos) + w * (10_000 // w)
    assert jax.tree.structure(cache24) == jax.tree.structure(far_end)
    for a, b in zip(jax.tree.leaves(cache24), jax.tree.leaves(far_end), strict=True):
        assert (a.shape, a.dtype, a.nbytes) == (b.shape, b.dtype, b.nbytes)
    shapes = [a.shape for a in jax.tree.leaves(model.init_cache(B, 100_000))]
    assert shapes == [a.shape for a in jax.tree.leaves(cache24)]
    # The ring's keys were rotated at their own positions, so the first w outputs
    # differ; once the ring holds only keys written out there, attention sees the
    # same relative positions (tiny: attention is the last block, the recurrent
    # states below it do not depend on positions) — equal up to float32 RoPE angles.
    assert rel_err(y_far[:, :w], y_near[:, :w]) > 1e-2
    assert rel_err(y_far[:, w:], y_near[:, w:]) <= 1e-3


def _steps(model, x, cache):
    """Feeds ``x`` one position at a time from ``cache``."""
    outs = []
    for i in range(x.shape[1]):
        y, cache = _run(model, x[:, i:i + 1], cache)
        outs.append(y)
    return jnp.concatenate(outs, axis=1), cache


def test_transformer_cache_has_max_len_slots(tiny_transformer):
    model = tiny_transformer
    cache = model.init_cache(3, 40)
    assert cache.max_len == 40 and len(cache.layers) == model.cfg.depth
    assert cache.layers[0].k.shape == (3, 40, model.cfg.kv_heads, model.cfg.head_dim)
    assert int(cache.pos) == 0 and cache.pos.dtype == jnp.int32


def test_gqa_groups_queries_onto_their_kv_head(tiny_transformer):
    """kv_heads=2 equals MHA (kv_heads=4) whose k/v kernels repeat each kv head twice:
    query head i must read kv head i // (h/k)."""
    gqa, mha = tiny_transformer, build("transformer", "kv_heads=4")
    nnx.update(mha, nnx.state(gqa, nnx.All(nnx.Param, nnx.Not(nnx.PathContains("attn")))))
    for blk_g, blk_m in zip(gqa.blocks, mha.blocks, strict=True):
        for name in ("q", "o"):
            getattr(blk_m.attn, name).w[...] = getattr(blk_g.attn, name).w[...]
        for name in ("k", "v"):
            getattr(blk_m.attn, name).w[...] = jnp.repeat(getattr(blk_g.attn, name).w[...], 2,
                                                          axis=1)
    x = _x()
    assert rel_err(_full(mha, x), _full(gqa, x)) <= 1e-5


def test_rg_lru_decay_is_initialised_in_range(tiny_griffin):
    model = tiny_griffin
    lrus = [m for _, m in nnx.iter_graph(model) if isinstance(m, RGLRU)]
    assert len(lrus) == 2  # tiny: depth 3 = (recurrent, recurrent, attention)
    for lru in lrus:
        a = np.asarray(lru.a())
        assert a.shape == (32,) and a.min() >= 0.9 - 1e-6 and a.max() <= 0.999 + 1e-6
        assert a.max() - a.min() > 0.02  # spread over the ring, not one value


def test_lru_scans_agree_with_a_loop():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, (2, 33, 5)).astype(np.float32)
    u = rng.standard_normal((2, 33, 5)).astype(np.float32)
    h = rng.standard_normal((2, 5)).astype(np.float32)
    h0, ref = h, []
    for t in range(33):
        h = a[:, t] * h + u[:, t]
        ref.append(h)
    ref = np.stack(ref, axis=1)
    scan = jax.jit(lru_scan, static_argnums=3)
    for kind in ("associative", "linear"):
        hs, last = scan(a, u, h0, kind)
        assert rel_err(hs, ref) <= 1e-5 and rel_err(last, ref[:, -1]) <= 1e-5
    one, last = lru_scan(a[:, :1], u[:, :1], h0)  # the single-step path
    assert rel_err(one[:, 0], ref[:, 0]) <= 1e-6 and rel_err(last, ref[:, 0]) <= 1e-6


def test_greedy_decode_in_jit_while_loop(tiny_backbone):
    """A tiny greedy LM (random tied embeddings) decoded inside one jitted while_loop;
    the full forward over the result must predict every generated token."""
    model = tiny_backbone
    vocab, steps = 11, T
    table = jax.random.normal(jax.random.key(5), (vocab, model.cfg.width))
    graphdef, state = nnx.split(model)

    @jax.jit
    def generate(state, first):
        m = nnx.merge(graphdef, state)
        cache = m.init_cache(B, steps)
        tokens = jnp.zeros((B, steps), jnp.int32).at[:, 0].set(first)

        def body(carry):
            i, tokens, cache = carry
            x = table[jax.lax.dynamic_slice_in_dim(tokens, i, 1, axis=1)]
            y, cache = m(x, cache=cache)
            nxt = jnp.argmax(y[:, 0] @ table.T, axis=-1).astype(jnp.int32)
            return i + 1, tokens.at[:, i + 1].set(nxt), cache

        _, tokens, cache = jax.lax.while_loop(lambda c: c[0] < steps - 1, body,
                                              (jnp.int32(0), tokens, cache))
        return tokens, cache

    tokens, cache = generate(state, jnp.array([1, 7], jnp.int32))
    assert int(cache.pos) == steps - 1
    assert len(np.unique(np.asarray(tokens))) > 1
    pred = jnp.argmax(_full(model, table[tokens]) @ table.T, axis=-1)
    np.testing.assert_array_equal(np.asarray(pred[:, :-1]), np.asarray(tokens[:, 1:]))


def test_griffin_gradients_are_finite_and_reach_every_parameter(tiny_griffin):
    model = tiny_griffin
    x = _x(t=5)

    @nnx.jit
    def grads(m):
        return nnx.grad(lambda m: jnp.mean(jnp.square(m(x)[0] - 0.5)))(m)

    for path, g in nnx.to_flat_state(grads(model)):
        g = np.asarray(g[...])
        assert np.all(np.isfinite(g)) and np.any(g != 0), path


def test_bfloat16_compute_keeps_the_lru_state_float32(tiny_griffin):
    model = build("griffin", "dtype=bfloat16")  # float32 parameters, bfloat16 compute
    nnx.update(model, nnx.state(tiny_griffin, nnx.Param))
    x = _x()
    y, cache = _run(model, x, model.init_cache(B, 0, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    assert rel_err(y, _full(tiny_griffin, x)) <= 0.05  # bfloat16 has 8 mantissa bits
    assert cache.layers[0].h.dtype == jnp.float32 and cache.layers[0].conv.dtype == jnp.bfloat16
    assert cache.layers[2].k.dtype == jnp.bfloat16


def test_presets_and_checks():
    for kind in ("transformer", "griffin"):
        small = resolve(BackboneConfig, "small", [f"kind={kind}"])
        assert 256 <= small.width <= 384 and 6 <= small.depth <= 8
        abstract = nnx.eval_shape(lambda c=small: make_backbone(c, rngs=nnx.Rngs(0)))
        n = sum(p.size for p in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
        assert 4e6 <= n <= 10e6, (kind, n)
    with pytest.raises(ConfigError, match="must divide heads"):
        resolve(BackboneConfig, "tiny", ["kv_heads=3"])
    with pytest.raises(ConfigError, match="multiple of heads"):
        resolve(BackboneConfig, "tiny", ["kind=griffin", "lru_width=30"])
    with pytest.raises(ConfigError, match="not allowed"):
        resolve(BackboneConfig, "tiny", ["block_pattern=recurrent,mlp"])
    assert tiny_cfg("griffin", "depth=5").block_kinds == (
        "recurrent", "recurrent", "attention", "recurrent", "recurrent")
    assert isinstance(make_backbone(tiny_cfg("griffin"), rngs=rngs()), Griffin)
    assert isinstance(make_backbone(tiny_cfg("transformer"), rngs=rngs()), Transformer)


@pytest.mark.parametrize("kind", ["transformer", "griffin"])
def test_residual_dropout_only_with_a_key(kind):
    model = build(kind, "dropout=0.5")
    x = _x()
    plain = model(x)[0]
    np.testing.assert_array_equal(plain, model(x)[0])                # no key: deterministic
    k0, k1 = jax.random.key(0), jax.random.key(1)
    a, b = model(x, dropout_key=k0)[0], model(x, dropout_key=k1)[0]
    np.testing.assert_array_equal(a, model(x, dropout_key=k0)[0])    # same key: same masks
    assert rel_err(a, plain) > 1e-2 and rel_err(a, b) > 1e-2
    # rate 0 with a key is the plain forward pass
    off = build(kind, "dropout=0.0")
    np.testing.assert_array_equal(off(x, dropout_key=k0)[0], off(x)[0])
