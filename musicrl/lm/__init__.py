"""The generator's sequence models (DESIGN §7): backbones (transformer, Griffin), their
caches, shared layers with logical axis names, and codebook token patterns.

Both backbones implement one contract, :class:`Backbone`::

    backbone = make_backbone(cfg, rngs=nnx.Rngs(0))        # by cfg.kind
    cache = backbone.init_cache(batch, max_len)            # Griffin ignores max_len
    y_btd, cache = backbone(x_btd, cache=cache)           # prefill (t > 1) or decode (t = 1)
    y_btd, _ = backbone(x_btd)                            # training: causal, no cache

Inputs are already embedded ``[b, t, d]``; outputs are final-normed ``[b, t, d]``.
Caches are pytrees of fixed shapes with ``pos`` an int32 scalar, so a whole
decode can run inside ``jax.jit`` / ``lax.while_loop``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import nnx

from musicrl.lm.config import BackboneConfig
from musicrl.lm.griffin import Griffin, GriffinCache, LocalAttentionCache, RecurrentState
from musicrl.lm.layers import AXES, Embedder, GatedMLP, RMSNorm, apply_rope, logical_axes, param
from musicrl.lm.patterns import DelayPattern, FlattenPattern, Layout, Pattern, make_pattern
from musicrl.lm.transformer import AttentionCache, Transformer, TransformerCache

__all__ = [
    "AXES",
    "AttentionCache",
    "Backbone",
    "BackboneCache",
    "BackboneConfig",
    "DelayPattern",
    "Embedder",
    "FlattenPattern",
    "GatedMLP",
    "Griffin",
    "GriffinCache",
    "Layout",
    "LocalAttentionCache",
    "Pattern",
    "RMSNorm",
    "RecurrentState",
    "Transformer",
    "TransformerCache",
    "apply_rope",
    "logical_axes",
    "make_backbone",
    "make_pattern",
    "param",
]

BackboneCache = TransformerCache | GriffinCache


@runtime_checkable
class Backbone(Protocol):
    """What the stage models call; :class:`Transformer` and :class:`Griffin` implement it."""

    cfg: BackboneConfig

    def init_cache(self, batch: int, max_len: int, dtype: Any = jnp.float32) -> Any:
        """An empty cache (``pos = 0``) for ``batch`` sequences of up to ``max_len``."""
        ...

    def __call__(self, x_btd: jax.Array, cache: Any = None) -> tuple[jax.Array, Any]:
        """``(y_btd, new cache)``; with ``cache=None``, a causal forward from position 0
        returning ``(y_btd, None)``."""
        ...


def make_backbone(cfg: BackboneConfig, *, rngs: nnx.Rngs) -> Transformer | Griffin:
    """The backbone named by ``cfg.kind`` (``"transformer"`` or ``"griffin"``)."""
    if cfg.kind == "transformer":
        return Transformer(cfg, rngs=rngs)
    if cfg.kind == "griffin":
        return Griffin(cfg, rngs=rngs)
    raise ValueError(f"unknown backbone kind {cfg.kind!r}; choose 'transformer' or 'griffin'")
