"""Helpers of the lm tests: tiny configs and models.

Parameters are drawn with the ``rbg`` PRNG: on CPU, XLA compiles a threefry
sampler for each new parameter shape in ~1 s, an RBG one in ~0.2 s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from musicrl.config import resolve
from musicrl.lm import BackboneConfig, make_backbone


def tiny_cfg(kind: str, *overrides: str) -> BackboneConfig:
    return resolve(BackboneConfig, "tiny", [f"kind={kind}", *overrides])


def rngs(seed: int = 0) -> nnx.Rngs:
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def build(kind: str, *overrides: str, seed: int = 0):
    return make_backbone(tiny_cfg(kind, *overrides), rngs=rngs(seed))


def rel_err(a: jax.Array, b: jax.Array) -> float:
    """max |a − b| / max |b|."""
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
