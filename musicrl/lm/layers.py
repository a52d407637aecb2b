"""Layers shared by the generator backbones: RMSNorm, RoPE, einsum projections,
the gated MLP, attention, token embeddings — every parameter named by logical axes.

Dimension legend: ``b`` batch, ``t`` query positions, ``s`` key positions,
``d`` width, ``h`` query heads, ``k`` key/value heads, ``g`` = h/k query heads
per key/value head, ``e`` head dimension, ``f`` MLP hidden width, ``v`` vocabulary.

Logical axis names (maxtext style). Each ``nnx.Param`` carries the names of its
axes as ``out_sharding`` metadata; ``musicrl/sharding.py`` maps them to mesh
axes with one rules table, so sharding a model needs no change here:

=============  ==========================================
``embed``      the residual stream width d
``mlp``        the MLP hidden width f
``heads``      query heads h (Griffin: RG-LRU gate blocks)
``kv_heads``   key/value heads k
``kv``         the head dimension e
``vocab``      token ids v
``lru``        the RG-LRU width r
``conv``       the taps of Griffin's temporal Conv1D
=============  ==========================================

The names are annotations only (``eager_sharding=False``): building a model
needs no mesh, and the arrays are placed by the caller, e.g. from
``nnx.get_partition_spec(nnx.state(model, nnx.Param))`` and the rules table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "AXES",
    "param",
    "fan_in_init",
    "logical_axes",
    "RMSNorm",
    "Einsum",
    "GatedMLP",
    "Attention",
    "Embedder",
    "apply_rope",
    "attend",
    "NEG_INF",
]

AXES = ("embed", "mlp", "heads", "kv_heads", "kv", "vocab", "lru", "conv")

# A large finite negative logit for masked keys: exp() underflows to exactly 0
# and, unlike -inf, a fully masked row cannot produce NaN.
NEG_INF = -2.3819763e38


def param(value: jax.Array, names: Sequence[str | None]) -> nnx.Param:
    """An ``nnx.Param`` carrying the logical names of its axes (see module docstring)."""
    names = tuple(names)
    if len(names) != value.ndim:
        raise ValueError(f"{len(names)} axis names {names} for a parameter of shape {value.shape}")
    unknown = [n for n in names if n is not None and n not in AXES]
    if unknown:
        raise ValueError(f"unknown logical axis names {unknown}; known: {AXES}")
    return nnx.Param(value, out_sharding=names, eager_sharding=False)


def logical_axes(model: nnx.Module) -> dict[Any, Any]:
    """The logical axis names of every parameter of ``model``.

    Returns:
      A nested dict with the structure of ``nnx.state(model, nnx.Param).to_pure_dict()``
      whose leaves are tuples of axis names (None where a parameter has none).
    """
    out: dict[Any, Any] = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = var.get_metadata().get("out_sharding")
    return out


def fan_in_init(shape: Sequence[int], in_axes: Sequence[int], scale: float = 1.0):
    """Truncated-normal fan-in init for a kernel of any rank (fan_in = prod of in_axes)."""
    out_axes = tuple(i for i in range(len(shape)) if i not in in_axes)
    return jax.nn.initializers.variance_scaling(
        scale, "fan_in", "truncated_normal", in_axis=tuple(in_axes), out_axis=out_axes)


class RMSNorm(nnx.Module):
    """RMSNorm with a zero-initialised scale applied as ``(1 + scale)`` (Gemma)."""

    def __init__(self, d: int, *, eps: float = 1e-6, param_dtype: Any = jnp.float32):
        self.eps = eps
        self.scale = param(jnp.zeros((d,), param_dtype), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(var + self.eps) * (1.0 + self.scale[...].astype(jnp.float32))
        return y.astype(x.dtype)


class Einsum(nnx.Module):
    """A bias-free projection whose kernel has named axes; the equation is given at call
    time (flax examples/gemma), e.g. ``proj("btd,dhe->bthe", x)``."""

    def __init__(self, shape: Sequence[int], names: Sequence[str | None], *,
                 in_axes: Sequence[int] = (0,), scale: float = 1.0, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        init = fan_in_init(shape, in_axes, scale)
        self.dtype = dtype
        self.w = param(init(rngs.params(), tuple(shape), param_dtype), names)

    def __call__(self, eqn: str, x: jax.Array) -> jax.Array:
        return jnp.einsum(eqn, x.astype(self.dtype), self.w[...].astype(self.dtype))


class GatedMLP(nnx.Module):
    """``W_down (act(W_gate x) ⊙ W_up x)``: SwiGLU (SiLU) or GeGLU (tanh GeLU)
    (Shazeer 2020, "GLU variants improve transformer")."""

    def __init__(self, d: int, f: int, activation: str, *, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        if activation not in ("swiglu", "geglu"):
            raise ValueError(f"activation={activation!r}: choose 'swiglu' or 'geglu'")
        self.activation = activation
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate = Einsum((d, f), ("embed", "mlp"), **kw)
        self.up = Einsum((d, f), ("embed", "mlp"), **kw)
        self.down = Einsum((f, d), ("mlp", "embed"), **kw)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        gate = self.gate("...d,df->...f", x_btd)
        act = jax.nn.silu(gate) if self.activation == "swiglu" else jax.nn.gelu(gate)
        return self.down("...f,fd->...d", act * self.up("...d,df->...f", x_btd))


def apply_rope(x_bt_e: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Rotary position embedding (Su et al. 2021) over the last axis, rotating halves.

    Args:
      x_bt_e: ``[b, t, ..., e]`` queries or keys (any number of head axes).
      positions: ``[t]`` or ``[b, t]`` integer positions.
      base: the maximum wavelength.
    """
    e = x_bt_e.shape[-1]
    inv_freq = base ** (-jnp.arange(0, e // 2, dtype=jnp.float32) * 2.0 / e)
    pos = jnp.asarray(positions, jnp.float32)
    if pos.ndim == 1:
        pos = pos[None]
    angle = pos[..., None] * inv_freq  # [b|1, t, e/2]
    angle = angle.reshape(angle.shape[:2] + (1,) * (x_bt_e.ndim - 3) + angle.shape[-1:])
    sin, cos = jnp.sin(angle), jnp.cos(angle)
    x1, x2 = jnp.split(x_bt_e.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_bt_e.dtype)


def attend(q_btkge: jax.Array, k_bske: jax.Array, v_bske: jax.Array,
           mask: jax.Array) -> jax.Array:
    """Scaled dot-product attention with grouped queries (MQA/GQA).

    Args:
      q_btkge: queries, grouped ``g`` per key/value head.
      k_bske, v_bske: keys and values.
      mask: boolean, True where query t may attend key s; broadcastable to
        ``[b, k, g, t, s]`` (e.g. ``[t, s]``).

    Returns:
      ``[b, t, k, g, e]``. Softmax in float32.
    """
    e = q_btkge.shape[-1]
    logits = jnp.einsum("btkge,bske->bkgts", q_btkge, k_bske,
                        preferred_element_type=jnp.float32) * (e ** -0.5)
    logits = jnp.where(mask, logits, NEG_INF)
    probs = jax.nn.softmax(logits, axis=-1).astype(v_bske.dtype)
    return jnp.einsum("bkgts,bske->btkge", probs, v_bske)


class Attention(nnx.Module):
    """The projections of multi-query / grouped-query attention with RoPE.

    The backbones own the caches and masks; this module only maps the residual
    stream to rotated ``q, k, v`` and the attended values back to it.
    """

    def __init__(self, d: int, heads: int, kv_heads: int, head_dim: int, rope_base: float, *,
                 dtype: Any = jnp.float32, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        if heads % kv_heads:
            raise ValueError(f"kv_heads={kv_heads} must divide heads={heads}")
        self.kv_heads, self.groups, self.rope_base = kv_heads, heads // kv_heads, rope_base
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q = Einsum((d, heads, head_dim), ("embed", "heads", "kv"), **kw)
        self.k = Einsum((d, kv_heads, head_dim), ("embed", "kv_heads", "kv"), **kw)
        self.v = Einsum((d, kv_heads, head_dim), ("embed", "kv_heads", "kv"), **kw)
        self.o = Einsum((heads, head_dim, d), ("heads", "kv", "embed"), in_axes=(0, 1), **kw)

    def qkv(self, x_btd: jax.Array, positions: jax.Array
            ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns rotated queries ``[b, t, k, g, e]``, rotated keys and values ``[b, t, k, e]``."""
        q = self.q("btd,dhe->bthe", x_btd)
        q = q.reshape(q.shape[:2] + (self.kv_heads, self.groups, q.shape[-1]))
        k = self.k("btd,dke->btke", x_btd)
        v = self.v("btd,dke->btke", x_btd)
        return apply_rope(q, positions, self.rope_base), apply_rope(k, positions, self.rope_base), v

    def out(self, o_btkge: jax.Array) -> jax.Array:
        """Attended values ``[b, t, k, g, e]`` → ``[b, t, d]``."""
        o = o_btkge.reshape(o_btkge.shape[:2] + (-1, o_btkge.shape[-1]))
        return self.o("bthe,hed->btd", o)


class Embedder(nnx.Module):
    """A token table ``[v, d]``: ``encode`` ids → vectors scaled by √d (Gemma),
    ``decode`` vectors → logits with the same (tied) table."""

    def __init__(self, vocab: int, d: int, *, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.dtype = dtype
        self.table = param(
            jax.random.normal(rngs.params(), (vocab, d), param_dtype) * (d ** -0.5),
            ("vocab", "embed"))

    def encode(self, ids: jax.Array) -> jax.Array:
        d = self.table.shape[-1]
        scale = jnp.asarray(np.sqrt(d), self.dtype)
        return jnp.take(self.table[...], ids, axis=0).astype(self.dtype) * scale

    def decode(self, x_btd: jax.Array) -> jax.Array:
        return jnp.einsum("...d,vd->...v", x_btd.astype(self.dtype),
                          self.table[...].astype(self.dtype))


def residual_dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout of a residual branch; the identity when ``key`` is None or rate 0."""
    if key is None or rate <= 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def block_keys(key: jax.Array | None, index: int) -> tuple[jax.Array | None, jax.Array | None]:
    """The two dropout keys (mixing, MLP) of block ``index``; (None, None) without a key."""
    if key is None:
        return None, None
    k = jax.random.fold_in(key, index)
    return jax.random.fold_in(k, 0), jax.random.fold_in(k, 1)

