"""Griffin backbone (De et al. 2024, "Griffin: mixing gated linear recurrences with local
attention"; RecurrentGemma): residual blocks whose temporal mixing follows a
pattern such as (recurrent, recurrent, local MQA attention).

Dimension legend: ``b`` batch, ``t`` new positions, ``d`` width, ``r`` RG-LRU
width, ``c`` Conv1D taps, ``w`` attention window (ring-buffer slots), ``h``
query heads, ``k`` key/value heads, ``g`` = h/k, ``e`` head dim.

* Residual block (Griffin §2.2): ``x + Mix(RMSNorm(x))`` then ``x + MLP(RMSNorm(x))``.
* Recurrent block (§2.4, Fig. 2): ``W_o( GeLU(W_y x) ⊙ RG-LRU(Conv1D_c(W_x x)) )``.
* RG-LRU (§2.4, eqs. 1–4), computed in float32 and in log space for stability:
  ``r_t = σ(W_a x_t)``, ``i_t = σ(W_x x_t)``, ``log a_t = c·r_t·log σ(Λ)``,
  ``h_t = a_t ⊙ h_{t−1} + √(1−a_t²) ⊙ (i_t ⊙ x_t)``, Λ set so σ(Λ) ∈ [0.9, 0.999].
* Local attention (§2.3): MQA/GQA with RoPE; a query at position p sees keys
  p−w … p.

The sampling state is fixed-size: per recurrent block the last ``c−1`` Conv1D
inputs and the LRU state ``h``; per attention block a ring buffer of ``w`` keys
and values (slot j holds the latest position ≡ j mod w). Memory does not grow
with the length generated.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from musicrl.lm.config import BackboneConfig
from musicrl.lm.layers import (
    Attention,
    Einsum,
    GatedMLP,
    RMSNorm,
    attend,
    block_keys,
    fan_in_init,
    param,
    residual_dropout,
)

__all__ = ["RecurrentState", "LocalAttentionCache", "GriffinCache", "Conv1D", "RGLRU",
           "RecurrentBlock", "LocalAttention", "Griffin", "lru_scan"]


# ----------------------------------------------------------------------------
# Cache pytrees
# ----------------------------------------------------------------------------

@struct.dataclass
class RecurrentState:
    """State of a recurrent block: ``conv`` ``[b, c−1, r]`` (previous Conv1D inputs) and
    ``h`` ``[b, r]`` (the RG-LRU state, always float32)."""

    conv: jax.Array
    h: jax.Array


@struct.dataclass
class LocalAttentionCache:
    """Ring buffer of the last ``w`` keys and values, ``[b, w, k, e]``."""

    k: jax.Array
    v: jax.Array


@struct.dataclass
class GriffinCache:
    """The sampling state of :class:`Griffin`: one entry per block and ``pos``, the number
    of positions seen so far (int32 scalar). Its size does not depend on ``pos``."""

    layers: tuple[RecurrentState | LocalAttentionCache, ...]
    pos: jax.Array


# ----------------------------------------------------------------------------
# RG-LRU
# ----------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _sqrt_bounded_grad(x: jax.Array, max_grad: float) -> jax.Array:
    """√x whose derivative is clipped at ``max_grad`` (RecurrentGemma: avoids NaN/inf
    gradients of √(1−a²) as a → 1, notably in bfloat16)."""
    del max_grad
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_grad):
    return jnp.sqrt(x), x


def _sqrt_bwd(max_grad, x, g):
    x = jnp.maximum(x, 1.0 / (4.0 * max_grad ** 2))
    return (g * 0.5 * jax.lax.rsqrt(x),)


_sqrt_bounded_grad.defvjp(_sqrt_fwd, _sqrt_bwd)


def lru_scan(a_btr: jax.Array, u_btr: jax.Array, h0_br: jax.Array, kind: str = "associative"
             ) -> tuple[jax.Array, jax.Array]:
    """Solves ``h_t = a_t ⊙ h_{t−1} + u_t`` over the time axis from ``h0``.

    Args:
      a_btr, u_btr, h0_br: float32.
      kind: ``"associative"`` (``lax.associative_scan``, parallel over t) or
        ``"linear"`` (``lax.scan``, sequential).

    Returns:
      ``(h_btr, h_last_br)``.
    """
    if a_btr.shape[1] == 1:  # single-step sampling path
        h = a_btr[:, 0] * h0_br + u_btr[:, 0]
        return h[:, None], h
    if kind == "linear":
        def step(h, au):
            a_t, u_t = au
            h = a_t * h + u_t
            return h, h
        h_last, hs = jax.lax.scan(step, h0_br, (jnp.swapaxes(a_btr, 0, 1),
                                                jnp.swapaxes(u_btr, 0, 1)))
        return jnp.swapaxes(hs, 0, 1), h_last
    if kind != "associative":
        raise ValueError(f"kind={kind!r}: choose 'associative' or 'linear'")
    # Fold h0 into the first input, then compose affine maps h ↦ a h + u.
    u_btr = u_btr.at[:, 0].add(a_btr[:, 0] * h0_br)

    def combine(left, right):
        a_l, u_l = left
        a_r, u_r = right
        return a_l * a_r, a_r * u_l + u_r

    _, hs = jax.lax.associative_scan(combine, (a_btr, u_btr), axis=1)
    return hs, hs[:, -1]


class BlockDiagonalLinear(nnx.Module):
    """``x ↦ W x + b`` with W block-diagonal (one ``r/h × r/h`` block per head), the gate
    projections of the RG-LRU (RecurrentGemma)."""

    def __init__(self, r: int, blocks: int, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.blocks, self.dtype = blocks, dtype
        shape = (blocks, r // blocks, r // blocks)
        self.w = param(fan_in_init(shape, (1,))(rngs.params(), shape, param_dtype),
                       ("heads", None, None))
        self.b = param(jnp.zeros((blocks, r // blocks), param_dtype), ("heads", None))

    def __call__(self, x_btr: jax.Array) -> jax.Array:
        x = x_btr.reshape(x_btr.shape[:-1] + (self.blocks, -1)).astype(self.dtype)
        y = jnp.einsum("...hi,hij->...hj", x, self.w[...].astype(self.dtype))
        y = y + self.b[...].astype(self.dtype)
        return y.reshape(x_btr.shape)


def _lambda_init(key: jax.Array, r: int, lo: float = 0.9, hi: float = 0.999) -> jax.Array:
    """Λ such that a = σ(Λ) has a² uniform in [lo², hi²] (Griffin App. A; RecurrentGemma)."""
    a = jnp.sqrt(jax.random.uniform(key, (r,), jnp.float32, lo ** 2, hi ** 2))
    return jnp.log(a) - jnp.log1p(-a)  # logit(a)


class RGLRU(nnx.Module):
    """The Real-Gated Linear Recurrent Unit (Griffin §2.4), float32 inside."""

    def __init__(self, r: int, blocks: int, c: float, scan: str, *, dtype: Any,
                 param_dtype: Any, rngs: nnx.Rngs):
        self.c, self.scan = c, scan
        self.lam = param(_lambda_init(rngs.params(), r).astype(param_dtype), ("lru",))
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_gate = BlockDiagonalLinear(r, blocks, **kw)
        self.a_gate = BlockDiagonalLinear(r, blocks, **kw)

    def a(self) -> jax.Array:
        """The base decay a = σ(Λ) ``[r]``."""
        return jax.nn.sigmoid(self.lam[...].astype(jnp.float32))

    def __call__(self, x_btr: jax.Array, h0_br: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns ``(y_btr in x's dtype, h_last_br float32)``."""
        gate_i = jax.nn.sigmoid(self.input_gate(x_btr).astype(jnp.float32))
        gate_r = jax.nn.sigmoid(self.a_gate(x_btr).astype(jnp.float32))
        # log a_t = c·r_t·log σ(Λ) = −c·r_t·softplus(−Λ)   (eq. 3, in log space)
        log_a = -self.c * gate_r * jax.nn.softplus(-self.lam[...].astype(jnp.float32))
        a = jnp.exp(log_a)
        mult = _sqrt_bounded_grad(1.0 - jnp.exp(2.0 * log_a), 1000.0)
        u = mult * (gate_i * x_btr.astype(jnp.float32))  # √(1−a_t²) ⊙ (i_t ⊙ x_t)   (eq. 4)
        h, h_last = lru_scan(a, u, h0_br.astype(jnp.float32), self.scan)
        return h.astype(x_btr.dtype), h_last


class Conv1D(nnx.Module):
    """Causal depthwise temporal convolution of ``c`` taps; tap ``c−1`` sees the current
    input. The state is the previous ``c−1`` inputs (zeros at the start)."""

    def __init__(self, r: int, taps: int, *, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.taps, self.dtype = taps, dtype
        # RecurrentGemma: fan-in (= taps) init with variance scale 0.01.
        init = fan_in_init((taps, r), (0,), scale=0.01)
        self.w = param(init(rngs.params(), (taps, r), param_dtype), ("conv", "lru"))
        self.b = param(jnp.zeros((r,), param_dtype), ("lru",))

    def __call__(self, x_btr: jax.Array, state_bcr: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns ``(y_btr, new state [b, c−1, r])``."""
        t = x_btr.shape[1]
        xc = jnp.concatenate([state_bcr.astype(self.dtype), x_btr.astype(self.dtype)], axis=1)
        w = self.w[...].astype(self.dtype)
        y = sum(xc[:, i:i + t] * w[i] for i in range(self.taps)) + self.b[...].astype(self.dtype)
        return y, xc[:, xc.shape[1] - (self.taps - 1):]


class RecurrentBlock(nnx.Module):
    """``W_o( GeLU(W_y x) ⊙ RG-LRU(Conv1D(W_x x)) )`` (Griffin §2.4, Fig. 2)."""

    def __init__(self, cfg: BackboneConfig, *, rngs: nnx.Rngs):
        d, r = cfg.width, cfg.lru_width_
        kw = dict(dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype, rngs=rngs)
        self.linear_y = Einsum((d, r), ("embed", "lru"), **kw)
        self.linear_x = Einsum((d, r), ("embed", "lru"), **kw)
        self.conv = Conv1D(r, cfg.conv_width, **kw)
        self.lru = RGLRU(r, cfg.heads, cfg.lru_c, cfg.lru_scan, **kw)
        self.linear_out = Einsum((r, d), ("lru", "embed"), **kw)
        self.r, self.taps = r, cfg.conv_width

    def init_state(self, batch: int, dtype: Any) -> RecurrentState:
        return RecurrentState(conv=jnp.zeros((batch, self.taps - 1, self.r), dtype),
                              h=jnp.zeros((batch, self.r), jnp.float32))

    def __call__(self, x_btd: jax.Array, positions_t: jax.Array, state: RecurrentState | None
                 ) -> tuple[jax.Array, RecurrentState | None]:
        del positions_t  # the recurrence is position-free
        given = state is not None
        if not given:
            state = self.init_state(x_btd.shape[0], x_btd.dtype)
        y = jax.nn.gelu(self.linear_y("btd,dr->btr", x_btd))
        xr = self.linear_x("btd,dr->btr", x_btd)
        xr, conv_state = self.conv(xr, state.conv)
        xr, h = self.lru(xr, state.h)
        out = self.linear_out("btr,rd->btd", xr * y)
        if not given:
            return out, None
        return out, RecurrentState(conv=conv_state.astype(state.conv.dtype), h=h)


class LocalAttention(nnx.Module):
    """Sliding-window MQA/GQA with RoPE; a query at p attends keys p−w … p (§2.3)."""

    def __init__(self, cfg: BackboneConfig, *, rngs: nnx.Rngs):
        self.window = cfg.window
        self.attn = Attention(cfg.width, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.rope_base,
                              dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype, rngs=rngs)

    def init_state(self, batch: int, kv_heads: int, head_dim: int, dtype: Any
                   ) -> LocalAttentionCache:
        shape = (batch, self.window, kv_heads, head_dim)
        return LocalAttentionCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype))

    def _mask(self, q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
        delta = q_pos[:, None] - k_pos[None, :]
        return (k_pos[None, :] >= 0) & (delta >= 0) & (delta <= self.window)

    def __call__(self, x_btd: jax.Array, positions_t: jax.Array,
                 cache: LocalAttentionCache | None
                 ) -> tuple[jax.Array, LocalAttentionCache | None]:
        q, k, v = self.attn.qkv(x_btd, positions_t)
        if cache is None:
            o = attend(q, k, v, self._mask(positions_t, positions_t))
            return self.attn.out(o), None
        w, t = self.window, x_btd.shape[1]
        pos0 = positions_t[0]
        # Slot j holds the latest position p < pos0 with p ≡ j (mod w); p < 0: empty.
        slot_pos = pos0 - 1 - jnp.remainder(pos0 - 1 - jnp.arange(w, dtype=jnp.int32), w)
        k_all = jnp.concatenate([cache.k.astype(k.dtype), k], axis=1)
        v_all = jnp.concatenate([cache.v.astype(v.dtype), v], axis=1)
        mask = self._mask(positions_t, jnp.concatenate([slot_pos, positions_t]))
        o = attend(q, k_all, v_all, mask)
        # Write the last min(t, w) new keys to their slots (distinct, so order-free).
        m = min(t, w)
        idx = jnp.remainder(positions_t[t - m:], w)
        new = LocalAttentionCache(k=cache.k.at[:, idx].set(k[:, t - m:].astype(cache.k.dtype)),
                                  v=cache.v.at[:, idx].set(v[:, t - m:].astype(cache.v.dtype)))
        return self.attn.out(o), new


class ResidualBlock(nnx.Module):
    """``x + Mix(RMSNorm(x))`` then ``x + MLP(RMSNorm(x))``; Mix is recurrent or attention."""

    def __init__(self, cfg: BackboneConfig, kind: str, *, rngs: nnx.Rngs):
        self.kind = kind
        self.mix_norm = RMSNorm(cfg.width, eps=cfg.norm_eps, param_dtype=cfg.params_dtype)
        self.mix = (RecurrentBlock(cfg, rngs=rngs) if kind == "recurrent"
                    else LocalAttention(cfg, rngs=rngs))
        self.mlp_norm = RMSNorm(cfg.width, eps=cfg.norm_eps, param_dtype=cfg.params_dtype)
        self.mlp = GatedMLP(cfg.width, cfg.mlp_hidden_, cfg.activation, dtype=cfg.compute_dtype,
                            param_dtype=cfg.params_dtype, rngs=rngs)
        self.dropout = cfg.dropout

    def __call__(self, x_btd: jax.Array, positions_t: jax.Array, cache: Any,
                 dropout_keys: tuple = (None, None)) -> tuple[jax.Array, Any]:
        y, cache = self.mix(self.mix_norm(x_btd), positions_t, cache)
        x_btd = x_btd + residual_dropout(y, self.dropout, dropout_keys[0])
        return x_btd + residual_dropout(self.mlp(self.mlp_norm(x_btd)), self.dropout,
                                        dropout_keys[1]), cache


class Griffin(nnx.Module):
    """The Griffin backbone: ``[b, t, d]`` → ``[b, t, d]`` (final RMSNorm)."""

    def __init__(self, cfg: BackboneConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.blocks = nnx.List([ResidualBlock(cfg, kind, rngs=rngs) for kind in cfg.block_kinds])
        self.final_norm = RMSNorm(cfg.width, eps=cfg.norm_eps, param_dtype=cfg.params_dtype)

    def init_cache(self, batch: int, max_len: int = 0, dtype: Any = jnp.float32) -> GriffinCache:
        """An empty fixed-size cache; ``max_len`` is ignored (the state never grows)."""
        del max_len
        layers = tuple(
            blk.mix.init_state(batch, dtype) if blk.kind == "recurrent"
            else blk.mix.init_state(batch, self.cfg.kv_heads, self.cfg.head_dim, dtype)
            for blk in self.blocks)
        return GriffinCache(layers=layers, pos=jnp.zeros((), jnp.int32))

    def __call__(self, x_btd: jax.Array, cache: GriffinCache | None = None, *,
                 dropout_key: jax.Array | None = None
                 ) -> tuple[jax.Array, GriffinCache | None]:
        """Causal forward over ``t`` new positions (see :class:`musicrl.lm.Transformer`)."""
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
        return y, GriffinCache(layers=tuple(new_layers), pos=pos0 + t)
