"""Decoder-only transformer backbone: pre-norm RMSNorm, RoPE, gated MLP, MQA/GQA,
with an explicit KV cache pytree passed in and returned.

Dimension legend: ``b`` batch, ``t`` new positions, ``s`` cache slots (max_len),
``d`` width, ``h`` query heads, ``k`` key/value heads, ``g`` = h/k, ``e`` head dim,
``l`` layers.

Contract (shared with :class:`musicrl.lm.griffin.Griffin`)::

    cache = model.init_cache(batch, max_len)          # empty: pos = 0
    y_btd, cache = model(x_btd, cache=cache)         # positions pos … pos+t-1
    y_btd, _ = model(x_btd)                          # training: causal, no cache

The cache holds ``max_len`` slots per layer; the caller must not run past
``max_len`` tokens (inside jit this cannot be checked: writes past the end are
clamped by ``dynamic_update_slice`` and would corrupt the last slots).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from musicrl.lm.config import BackboneConfig
from musicrl.lm.layers import (
    Attention,
    GatedMLP,
    RMSNorm,
    attend,
    block_keys,
    residual_dropout,
)

__all__ = ["AttentionCache", "TransformerCache", "TransformerBlock", "Transformer"]


@struct.dataclass
class AttentionCache:
    """Keys and values of one layer, ``[b, s, k, e]``; slot i holds position i."""

    k: jax.Array
    v: jax.Array


@struct.dataclass
class TransformerCache:
    """The sampling state of a :class:`Transformer`: one :class:`AttentionCache` per layer
    and ``pos``, the number of positions already written (an int32 scalar)."""

    layers: tuple[AttentionCache, ...]
    pos: jax.Array

    @property
    def max_len(self) -> int:
        return self.layers[0].k.shape[1]


def causal_mask(t: int) -> jax.Array:
    """``[t, t]`` True where key ≤ query."""
    return jnp.tril(jnp.ones((t, t), bool))


class TransformerBlock(nnx.Module):
    """``x + Attn(RMSNorm(x))`` then ``x + MLP(RMSNorm(x))``."""

    def __init__(self, cfg: BackboneConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype, rngs=rngs)
        self.attn_norm = RMSNorm(cfg.width, eps=cfg.norm_eps, param_dtype=cfg.params_dtype)
        self.attn = Attention(cfg.width, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.rope_base,
                              **kw)
        self.mlp_norm = RMSNorm(cfg.width, eps=cfg.norm_eps, param_dtype=cfg.params_dtype)
        self.mlp = GatedMLP(cfg.width, cfg.mlp_hidden_, cfg.activation, **kw)
        self.dropout = cfg.dropout

    def __call__(self, x_btd: jax.Array, positions_t: jax.Array,
                 cache: AttentionCache | None, dropout_keys: tuple = (None, None)
                 ) -> tuple[jax.Array, AttentionCache | None]:
        """Args: positions_t, the absolute positions ``[t]`` of the inputs (contiguous)."""
        q, k, v = self.attn.qkv(self.attn_norm(x_btd), positions_t)
        if cache is None:
            o = attend(q, k, v, causal_mask(x_btd.shape[1]))
        else:
            start = (0, positions_t[0], 0, 0)
            k_all = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), start)
            v_all = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), start)
            slots = jnp.arange(k_all.shape[1])
            # Slots past the last written position hold zeros (or stale values): masked.
            mask = slots[None, :] <= positions_t[:, None]  # [t, s]
            o = attend(q, k_all.astype(q.dtype), v_all.astype(q.dtype), mask)
            cache = AttentionCache(k=k_all, v=v_all)
        x_btd = x_btd + residual_dropout(self.attn.out(o), self.dropout, dropout_keys[0])
        x_btd = x_btd + residual_dropout(self.mlp(self.mlp_norm(x_btd)), self.dropout,
                                         dropout_keys[1])
        return x_btd, cache


class Transformer(nnx.Module):
    """The decoder-only transformer backbone: ``[b, t, d]`` → ``[b, t, d]`` (final RMSNorm)."""

    def __init__(self, cfg: BackboneConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.blocks = nnx.List([TransformerBlock(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.final_norm = RMSNorm(cfg.width, eps=cfg.norm_eps, param_dtype=cfg.params_dtype)

    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> TransformerCache:
        """An empty cache for ``batch`` sequences of up to ``max_len`` positions."""
        shape = (batch, max_len, self.cfg.kv_heads, self.cfg.head_dim)
        layers = tuple(AttentionCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype))
                       for _ in range(self.cfg.depth))
        return TransformerCache(layers=layers, pos=jnp.zeros((), jnp.int32))

    def __call__(self, x_btd: jax.Array, cache: TransformerCache | None = None, *,
                 dropout_key: jax.Array | None = None
                 ) -> tuple[jax.Array, TransformerCache | None]:
        """Causal forward over ``t`` new positions.

        Args:
          x_btd: embedded inputs.
          cache: None for training (positions 0 … t-1, nothing returned), or the state
            after the positions seen so far (prefill: t > 1 from empty; decode: t = 1).
          dropout_key: training only: enables ``cfg.dropout`` on the residual branches.

        Returns:
          ``(y_btd, cache)``: the normed outputs and the updated cache (None if none given).
        """
        t = x_btd.shape[1]
        pos0 = jnp.zeros((), jnp.int32) if cache is None else cache.pos
        positions = pos0 + jnp.arange(t, dtype=jnp.int32)
        h = x_btd.astype(self.cfg.compute_dtype)
        new_layers = []
        for i, block in enumerate(self.blocks):
            h, layer_cache = block(h, positions, None if cache is None else cache.layers[i],
                                   block_keys(dropout_key, i))
            new_layers.append(layer_cache)
        y = self.final_norm(h)
        if cache is None:
            return y, None
        return y, TransformerCache(layers=tuple(new_layers), pos=pos0 + t)
