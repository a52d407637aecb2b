"""Decoding the stage models: one jitted ``lax.while_loop`` per stage, with CFG.

The whole decode is a typed state (:class:`DecodeState`: the step, the token
buffer, the backbone cache, the RNG key, the next logits) and a step function
inside one ``jax.lax.while_loop`` (DESIGN §7; gemma's ``_sampler_loop``).
Prefill runs the MuLan prefix and the BOS step through the backbone once; each
loop iteration samples the K tokens of one pattern step, writes them, and runs
one backbone step. Attention backbones keep a KV cache sized to the sequence;
Griffin keeps a fixed-size state.

**Classifier-free guidance** (Ho & Salimans 2022; MusicLM/MusicGen use it):
the batch is doubled, conditional rows first and unconditional rows (null
MuLan prefix) after, both fed the same sampled tokens; one backbone pass per
step computes both, and logits = u + γ (c − u). γ = 1 skips the doubling.

Strategies are small frozen dataclasses (hashable, so they are static under
``jit``): :class:`Sampler` with temperature, top-k and top-p; temperature 0
is greedy.

Dimension legend: ``b`` batch, ``r`` rows (b or 2b with CFG), ``s`` steps,
``k`` levels per step, ``v`` vocabulary, ``t`` frames, ``m`` MuLan levels.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from musicrl.lm.stages import StageLM, conditioning_ids, stage_pattern, step_layout

__all__ = ["Sampler", "DecodeState", "sample_stage", "GREEDY"]


@dataclasses.dataclass(frozen=True)
class Sampler:
    """Temperature, then top-k, then top-p (nucleus) filtering of the logits.

    Attributes:
      temperature: 0 → greedy (argmax); 1 → the model's distribution.
      top_k: keep the k most likely tokens (0 = all).
      top_p: keep the smallest set whose probability reaches p (1 = all).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if not (self.temperature >= 0):
            raise ValueError(f"temperature={self.temperature} must be ≥ 0")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} must be ≥ 0 (0 = no top-k)")
        if not (0 < self.top_p <= 1):
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")

    def __call__(self, key: jax.Array, logits: jax.Array) -> jax.Array:
        """Samples ids [...] from logits [..., v]."""
        if self.temperature == 0:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        x = logits.astype(jnp.float32) / self.temperature
        if self.top_k:
            kth = jax.lax.top_k(x, self.top_k)[0][..., -1:]
            x = jnp.where(x < kth, -jnp.inf, x)
        if self.top_p < 1:
            srt = jnp.sort(x, axis=-1)[..., ::-1]
            cum = jnp.cumsum(jax.nn.softmax(srt, axis=-1), axis=-1)
            # smallest logit that is still inside the nucleus
            cut = jnp.take_along_axis(srt, jnp.sum(cum < self.top_p, -1, keepdims=True), -1)
            x = jnp.where(x < cut, -jnp.inf, x)
        return jax.random.categorical(key, x, axis=-1).astype(jnp.int32)


GREEDY = Sampler(temperature=0.0)


@struct.dataclass
class DecodeState:
    """Everything the decode loop carries; a pytree."""

    step: jax.Array       # int32 []: the step whose tokens are sampled next
    seq: jax.Array        # int32 [b, s, k]: sampled steps (pad where not yet / never)
    logits: jax.Array     # float32 [r, k, v]: the model's prediction for ``step``
    cache: Any            # the backbone's cache pytree
    key: jax.Array        # PRNG key


def _rows(x: jax.Array, guided: bool) -> jax.Array:
    return jnp.concatenate([x, x], axis=0) if guided else x


@functools.partial(jax.jit, static_argnames=("graphdef", "frames", "sampler", "guided"))
def _decode(graphdef, state, mulan_bm, cond_bt, prompt_btk, key, guidance, *, frames: int,
            sampler: Sampler, guided: bool):
    model: StageLM = nnx.merge(graphdef, state)
    cfg = model.cfg
    b = mulan_bm.shape[0]
    pat = stage_pattern(cfg)
    steps = pat.steps_for(frames)
    lay = step_layout(cfg, frames)
    valid, level, in_level = (jnp.asarray(a) for a in (lay.valid, lay.level, lay.in_level))
    # Continuation: the slots holding a frame of the prompt are written, not sampled.
    full = pat.layout(frames)
    forced = jnp.asarray(full.valid & (full.frame < prompt_btk.shape[1]))          # [s, n]
    given = prompt_btk[:, np.clip(full.frame, 0, max(prompt_btk.shape[1] - 1, 0)),
                       full.level] if prompt_btk.shape[1] else None              # [b, s, n]
    # Aligned conditioning of every input position (stage A): position j looks at the
    # frame that step j produces.
    cond = conditioning_ids(cfg, cond_bt, lay.frame) if cfg.cond_vocab else None  # [b, s, 2]
    cond_r = _rows(cond, guided) if cond is not None else None

    drop = jnp.concatenate([jnp.zeros((b,), bool), jnp.ones((b,), bool)]) if guided \
        else jnp.zeros((b,), bool)
    rows = 2 * b if guided else b
    n = pat.tokens_per_step
    prefix = model.embed_prefix(_rows(mulan_bm, guided), drop)
    bos = jnp.full((rows, 1, n), cfg.bos, jnp.int32)
    x0 = model.embed_steps(bos, in_level[:1], None if cond_r is None else cond_r[:, :1])
    cache = model.backbone.init_cache(rows, cfg.mulan_levels + steps,
                                      dtype=cfg.backbone.compute_dtype)
    y, cache = model.backbone(jnp.concatenate([prefix, x0], axis=1), cache=cache)

    init = DecodeState(step=jnp.zeros((), jnp.int32),
                       seq=jnp.full((b, steps, n), cfg.pad, jnp.int32),
                       logits=model.logits(y[:, -1:])[:, 0], cache=cache, key=key)

    def body(st: DecodeState) -> DecodeState:
        lg = jnp.take(st.logits, level[st.step], axis=1)                  # [r, n, v]
        if guided:
            c, u = lg[:b], lg[b:]
            lg = u + guidance * (c - u)
        key, sub = jax.random.split(st.key)
        tok = sampler(sub, lg)                                            # [b, n]
        if given is not None:
            tok = jnp.where(forced[st.step][None], given[:, st.step], tok)
        tok = jnp.where(valid[st.step][None], tok, cfg.pad)
        seq = jax.lax.dynamic_update_slice(st.seq, tok[:, None], (0, st.step, 0))
        nxt = jnp.minimum(st.step + 1, steps - 1)
        c_in = None if cond_r is None else jax.lax.dynamic_slice_in_dim(cond_r, nxt, 1, axis=1)
        x = model.embed_steps(_rows(tok, guided)[:, None], in_level[nxt][None], c_in)
        y, cache = model.backbone(x, cache=st.cache)
        return DecodeState(step=st.step + 1, seq=seq, logits=model.logits(y)[:, 0],
                           cache=cache, key=key)

    final = jax.lax.while_loop(lambda st: st.step < steps, body, init)
    return pat.revert(final.seq)


def sample_stage(model: StageLM, mulan_bm: jax.Array | np.ndarray, frames: int, *,
                 key: jax.Array, cond_bt: jax.Array | np.ndarray | None = None,
                 guidance: float = 1.0, sampler: Sampler = Sampler(),
                 prompt: jax.Array | np.ndarray | None = None) -> jax.Array:
    """Samples ``frames`` frames of a stage: int32 [b, frames, k].

    Args:
      model: a :class:`StageLM` (stage S or A).
      mulan_bm: MuLan conditioning tokens [b, m] (text tokens at inference).
      frames: frames to generate (25 Hz semantic or 50 Hz acoustic).
      key: PRNG key; same key → same tokens.
      cond_bt: the aligned conditioning stream (semantic tokens [b, frames / ratio])
        for stage A; None for stage S.
      guidance: CFG scale γ; 1 = conditional only (no extra rows).
      sampler: the sampling strategy.
      prompt: continuation: the first frames ``[b, t0, k]`` (t0 < frames) are these
        tokens, fed through the model as if sampled; the rest continue them (MusicLM's
        continuation). Returned unchanged in the output's first t0 frames.
    """
    cfg = model.cfg
    if cfg.cond_vocab and cond_bt is None:
        raise ValueError("this stage needs its conditioning stream (semantic tokens)")
    mulan_bm = jnp.asarray(mulan_bm, jnp.int32)
    b = mulan_bm.shape[0]
    if prompt is None:
        prompt = jnp.zeros((b, 0, cfg.levels), jnp.int32)
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 3 or prompt.shape[0] != b or prompt.shape[2] != cfg.levels:
        raise ValueError(f"prompt must be [b={b}, t0, k={cfg.levels}] tokens; got shape "
                         f"{tuple(prompt.shape)}")
    if prompt.shape[1] >= frames:
        raise ValueError(f"a prompt of {prompt.shape[1]} frames leaves nothing to sample "
                         f"of {frames}")
    cond = (jnp.asarray(cond_bt, jnp.int32) if cond_bt is not None
            else jnp.zeros((mulan_bm.shape[0], 1), jnp.int32))
    graphdef, state = nnx.split(model)
    return _decode(graphdef, state, mulan_bm, cond, prompt, key, jnp.float32(guidance),
                   frames=frames, sampler=sampler, guided=guidance != 1.0)
