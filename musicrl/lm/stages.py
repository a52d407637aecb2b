"""The two token models of the MusicLM hierarchy (DESIGN §7), on either backbone.

* **Stage S** p(S | M): 12 MuLan tokens M as a prefix, then the 25 Hz semantic
  tokens S, one per step (K = 1).
* **Stage A** p(A | S, M): the same prefix, then the first K codec levels at
  50 Hz laid out by a token pattern (the delay pattern by default: step j
  carries level q of frame j − q, one token per level through K heads). The
  semantic tokens are given, not predicted: each step's input adds the
  embeddings of the semantic token of the step's frame and of the next one
  (time-aligned conditioning, 40 ms of look-ahead), so the sequence stays
  12 + T + K − 1 long instead of growing by a semantic prefix.

One :class:`StageLM` class serves both: a stage is (vocabulary, levels,
pattern, optional aligned conditioning). **Conditioning dropout**: a dropped
example sees per-level learned *null* MuLan embeddings instead of its tokens,
so one model is conditional and unconditional (needed for CFG).

**How a MuLan token enters** (``mulan_embed``): ``table`` learns one vector per
code and level (MusicLM). With 12 × 1024 codes and a few thousand training
clips most codes are seen a handful of times, so a prompt's codes carry little
the model has learned. ``codebook`` instead feeds, at prefix position l, the
RVQ reconstruction from levels 1 … l (the sum of their codebook vectors, a point
near the unit sphere of MuLan space) through one learned linear map, plus a
learned per-level vector: a code seen rarely still lands near the codes it
resembles. The codebooks are copied from the MuLan the stage is trained with
(:meth:`StageLM.set_mulan_codebook`), frozen and saved with the stage, so a
bundle can check that its MuLan is the one the stage was trained on.

Sequence layout (teacher forcing), for a pattern of S steps::

    position   0 … 11        12          13 …          12 + S − 1
    input      M_1 … M_12    BOS + c_0   seq_0 + c_1 … seq_{S−2} + c_{S−1}
    predicts   —             seq_0       seq_1 …       seq_{S−1}

Dimension legend: ``b`` batch, ``m`` MuLan levels (12), ``s`` pattern steps,
``k`` levels per step (K), ``d`` width, ``v`` vocabulary, ``t`` frames.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from musicrl.config import opt, presets_of, register_presets
from musicrl.lm.config import BackboneConfig
from musicrl.lm.layers import RMSNorm, param
from musicrl.lm.patterns import Pattern, make_pattern

__all__ = ["StageConfig", "StageLM", "MulanCodebook", "StepLayout", "stage_loss", "step_layout",
           "stage_pattern", "teacher_forcing", "conditioning_ids", "sequence_logprob",
           "prefix_contrast_loss"]


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One stage of the generator: what it predicts, from what, on which backbone."""

    stage: str = opt("semantic", "which stage: semantic (S | M) or acoustic (A | S, M)",
                     choices=("semantic", "acoustic"))
    backbone: BackboneConfig = BackboneConfig()
    vocab: int = opt(512, "token vocabulary of the predicted stream (semantic clusters or "
                          "codebook size)", min=2)
    levels: int = opt(1, "token levels per frame predicted (1 for semantic, K codec levels "
                         "for acoustic)", min=1, max=32)
    pattern: str = opt("delay", "layout of the levels over steps: delay (MusicGen) or "
                                "flatten (MusicLM coarse order)", choices=("delay", "flatten"))
    mulan_levels: int = opt(12, "MuLan conditioning tokens (the prefix)", min=1, max=32)
    mulan_vocab: int = opt(1024, "codes per MuLan RVQ level", min=2)
    cond_vocab: int = opt(0, "vocabulary of the time-aligned conditioning stream (semantic "
                             "tokens for stage A; 0 = none)", min=0)
    cond_ratio: int = opt(2, "predicted frames per conditioning frame (50 Hz / 25 Hz)",
                          min=1, max=16)
    frame_rate: float = opt(25.0, "frames per second of the predicted stream", min=1.0)
    cond_dropout: float = opt(0.1, "probability of dropping the MuLan prefix in training "
                                   "(CFG needs it)", min=0.0, max=1.0)
    mulan_embed: str = opt("table", "how a MuLan token enters: table (a learned vector per "
                                    "code and level, MusicLM) or codebook (the cumulative RVQ "
                                    "reconstruction through one learned projection; "
                                    "generalizes to rarely seen codes)",
                           choices=("table", "codebook"))
    mulan_dim: int = opt(128, "MuLan embedding dimension (codebook mode: the RVQ vectors' size)",
                         min=1)

    def check(self) -> str | None:
        if self.stage == "acoustic" and self.cond_vocab == 0:
            return "the acoustic stage needs cond_vocab = the semantic vocabulary"
        if self.stage == "semantic" and self.levels != 1:
            return "the semantic stage predicts one level (levels=1)"
        return None

    @property
    def pad(self) -> int:
        """Input id of an empty slot of the pattern (outputs never produce it)."""
        return self.vocab

    @property
    def bos(self) -> int:
        return self.vocab + 1


_tiny_bb = presets_of(BackboneConfig)["tiny"]
# Sized for training on one CPU core in well under an hour per stage: ≈ 4.5 M parameters.
_small_bb = dataclasses.replace(presets_of(BackboneConfig)["small"], width=256, heads=4,
                                kv_heads=1, head_dim=64, depth=6, mlp_ratio=3.0,
                                dropout=0.1)
_tiny_bb = dataclasses.replace(_tiny_bb, dropout=0.1)
register_presets(StageConfig, {
    "tiny": StageConfig(backbone=_tiny_bb, vocab=16, mulan_vocab=8, mulan_levels=3),
    "tiny-acoustic": StageConfig(stage="acoustic", backbone=_tiny_bb, vocab=64, levels=2,
                                 mulan_vocab=8, mulan_levels=3, cond_vocab=16, frame_rate=50.0),
    # stage S overfits its 1,846 clips within a few epochs: dropout 0.3 measured a lower
    # valid loss than 0.1 (2.240 vs 2.327 nats, docs/generator.md)
    # mulan_embed=codebook: 1,846 clips cannot teach 12 × 1024 free code vectors; through
    # the RVQ's own vectors the prompt reaches the model (MCC 83 % of real vs 52 % with
    # tables, docs/generator.md)
    "small": StageConfig(backbone=dataclasses.replace(_small_bb, dropout=0.3),
                         mulan_embed="codebook"),
    "small-acoustic": StageConfig(stage="acoustic", backbone=_small_bb, vocab=1024, levels=4,
                                  cond_vocab=512, frame_rate=50.0, mulan_embed="codebook"),
})


def stage_pattern(cfg: StageConfig) -> Pattern:
    """The token pattern of a stage (pads use the id ``cfg.pad``)."""
    return make_pattern(cfg.pattern, cfg.levels, cfg.pad)


@dataclasses.dataclass(frozen=True)
class StepLayout:
    """Static facts about the steps of a ``frames``-frame sequence, each ``[s, n]`` or ``[s]``.

    Attributes:
      valid: slot (j, i) holds a real code (sample it) rather than a pad.
      level: the codec level of slot (j, i): which head predicts it, which table embeds it.
      in_level: the level of the token *fed* at step j's slot i (step j − 1's; BOS at 0).
      frame: the newest frame step j produces (what the aligned conditioning looks at).
    """

    valid: np.ndarray
    level: np.ndarray
    in_level: np.ndarray
    frame: np.ndarray


def step_layout(cfg: StageConfig, frames: int) -> StepLayout:
    lay = stage_pattern(cfg).layout(frames)
    level = np.asarray(lay.level)
    in_level = np.concatenate([np.zeros_like(level[:1]), level[:-1]], axis=0)
    frame = np.maximum(np.where(lay.valid, lay.frame, -1).max(axis=1), 0)
    return StepLayout(valid=np.asarray(lay.valid), level=level, in_level=in_level, frame=frame)


class MulanCodebook(nnx.Variable):
    """The MuLan conditioning RVQ's codebooks [m, v, e] inside a stage (``mulan_embed=
    codebook``): saved with the weights, never trained (not an ``nnx.Param``)."""


class StageLM(nnx.Module):
    """Prefix of MuLan tokens → pattern steps of K tokens, on a transformer or Griffin."""

    def __init__(self, cfg: StageConfig, *, rngs: nnx.Rngs):
        from musicrl.lm import make_backbone

        self.cfg = cfg
        d, bb = cfg.backbone.width, cfg.backbone
        pd = bb.params_dtype
        init = lambda shape: jax.random.normal(rngs.params(), shape, pd) * 0.02  # noqa: E731
        if cfg.mulan_embed == "table":
            # Per MuLan level: its codes and one learned null (the dropped condition).
            self.mulan_embed = param(init((cfg.mulan_levels, cfg.mulan_vocab + 1, d)),
                                     (None, "vocab", "embed"))
        else:
            m, e = cfg.mulan_levels, cfg.mulan_dim
            self.mulan_codebook = MulanCodebook(jnp.zeros((m, cfg.mulan_vocab, e), pd))
            self.mulan_proj = param(jax.random.normal(rngs.params(), (e, d), pd) * e ** -0.5,
                                    (None, "embed"))
            self.mulan_level = param(init((m, d)), (None, "embed"))
            self.mulan_null = param(init((m, d)), (None, "embed"))
        # Per predicted level: codes, pad, BOS.
        self.token_embed = param(init((cfg.levels, cfg.vocab + 2, d)), (None, "vocab", "embed"))
        self.cond_embed = (param(init((2, cfg.cond_vocab, d)), (None, "vocab", "embed"))
                           if cfg.cond_vocab else None)
        self.backbone = make_backbone(bb, rngs=rngs)
        self.head_norm = RMSNorm(d, eps=bb.norm_eps, param_dtype=pd)
        self.head = param(jax.random.normal(rngs.params(), (cfg.levels, d, cfg.vocab), pd)
                          * d ** -0.5, (None, "embed", "vocab"))

    # -- embeddings ---------------------------------------------------------------------

    def set_mulan_codebook(self, codebook_mve: jax.Array | np.ndarray) -> None:
        """Copies the first ``mulan_levels`` RVQ codebooks of a MuLan into the stage
        (``mulan_embed=codebook``; before training, from the MuLan that makes its tokens)."""
        cfg = self.cfg
        want = (cfg.mulan_levels, cfg.mulan_vocab, cfg.mulan_dim)
        if cfg.mulan_embed != "codebook":
            raise ValueError("set_mulan_codebook needs mulan_embed=codebook")
        cb = jnp.asarray(codebook_mve)[:cfg.mulan_levels]
        if cb.shape != want:
            raise ValueError(f"MuLan codebooks {tuple(jnp.shape(codebook_mve))} do not fit the "
                             f"stage ({want[0]} levels × {want[1]} codes × {want[2]} dims): set "
                             "model.mulan_levels / mulan_vocab / mulan_dim to the MuLan's")
        self.mulan_codebook[...] = cb.astype(self.mulan_codebook[...].dtype)

    def embed_prefix(self, mulan_bm: jax.Array, drop_b: jax.Array) -> jax.Array:
        """MuLan tokens [b, m] (null embeddings where ``drop_b``) → [b, m, d]."""
        cfg, levels = self.cfg, jnp.arange(self.cfg.mulan_levels)[None, :]
        if cfg.mulan_embed == "table":
            ids = jnp.where(drop_b[:, None], cfg.mulan_vocab, mulan_bm)
            x = self.mulan_embed[...][levels, ids]
        else:
            ids = jnp.clip(mulan_bm, 0, cfg.mulan_vocab - 1)
            vec = self.mulan_codebook[...][levels, ids].astype(jnp.float32)      # [b, m, e]
            x = jnp.einsum("bme,ed->bmd", jnp.cumsum(vec, axis=1),
                           self.mulan_proj[...].astype(jnp.float32))
            x = x + self.mulan_level[...][None]
            x = jnp.where(drop_b[:, None, None], self.mulan_null[...][None], x)
        return x.astype(cfg.backbone.compute_dtype)

    def embed_steps(self, inputs_bsn: jax.Array, in_level_sn: jax.Array,
                    cond_bs2: jax.Array | None) -> jax.Array:
        """Previous-step tokens [b, s, n] of levels [s, n] (+ aligned conditioning ids
        [b, s, 2]) → [b, s, d]."""
        table = self.token_embed[...]
        x = sum(table[in_level_sn[None, :, i], inputs_bsn[..., i]]
                for i in range(inputs_bsn.shape[-1]))
        if self.cond_embed is not None and cond_bs2 is not None:
            c = self.cond_embed[...]
            x = x + c[0][cond_bs2[..., 0]] + c[1][cond_bs2[..., 1]]
        return x.astype(self.cfg.backbone.compute_dtype)

    def logits(self, y_bsd: jax.Array, level_sn: jax.Array | None = None) -> jax.Array:
        """Backbone outputs [b, s, d] → logits [b, s, k, v] of every level's head (float32),
        or [b, s, n, v] of the heads named by ``level_sn``."""
        h = self.head_norm(y_bsd)
        out = jnp.einsum("bsd,kdv->bskv", h.astype(jnp.float32),
                         self.head[...].astype(jnp.float32))
        if level_sn is None:
            return out
        return jnp.take_along_axis(out, jnp.asarray(level_sn)[None, :, :, None], axis=2)

    # -- full forward (training, scoring) -----------------------------------------------

    def __call__(self, mulan_bm: jax.Array, inputs_bsn: jax.Array, layout: StepLayout,
                 cond_bs2: jax.Array | None = None, drop_b: jax.Array | None = None,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        """Teacher-forced logits [b, s, n, v] for inputs that start with the BOS step
        (``dropout_key``: training only, enables the backbone's residual dropout)."""
        b = mulan_bm.shape[0]
        drop_b = jnp.zeros((b,), bool) if drop_b is None else drop_b
        x = jnp.concatenate([self.embed_prefix(mulan_bm, drop_b),
                             self.embed_steps(inputs_bsn, layout.in_level, cond_bs2)], axis=1)
        y, _ = self.backbone(x, cache=None, dropout_key=dropout_key)
        return self.logits(y[:, self.cfg.mulan_levels:], layout.level)


# ----------------------------------------------------------------------------------------
# Batches → model inputs, and the loss
# ----------------------------------------------------------------------------------------

def conditioning_ids(cfg: StageConfig, cond_bt: jax.Array, frame_s: np.ndarray) -> jax.Array:
    """Aligned conditioning ids [b, s, 2]: the semantic token of each step's frame and the next.

    ``frame_s`` holds the frame of each *input* position (see :func:`step_layout`).
    """
    n = cond_bt.shape[1]
    now = np.minimum(frame_s // cfg.cond_ratio, n - 1)
    nxt = np.minimum(now + 1, n - 1)
    return jnp.stack([cond_bt[:, now], cond_bt[:, nxt]], axis=-1)


def teacher_forcing(cfg: StageConfig, codes_btk: jax.Array, cond_bt: jax.Array | None = None):
    """Frames [b, t, k] → (inputs [b, s, n], targets [b, s, n], layout, cond [b, s, 2] | None)."""
    b, t, _ = codes_btk.shape
    seq = stage_pattern(cfg).build(codes_btk)                              # [b, s, n]
    bos = jnp.full((b, 1, seq.shape[-1]), cfg.bos, seq.dtype)
    inputs = jnp.concatenate([bos, seq[:, :-1]], axis=1)
    layout = step_layout(cfg, t)
    cond = conditioning_ids(cfg, cond_bt, layout.frame) if cfg.cond_vocab else None
    return inputs, seq, layout, cond


def stage_loss(model: StageLM, mulan_bm: jax.Array, codes_btk: jax.Array,
               cond_bt: jax.Array | None, drop_b: jax.Array,
               dropout_key: jax.Array | None = None, early_frames: int = 0,
               early_weight: float = 1.0, input_noise: float = 0.0,
               noise_key: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """Token cross-entropy over the valid slots of the pattern (nats/token).

    Returns ``(objective, metrics)``; ``metrics["loss"]`` is always the plain mean.
    Training-only options, both off by default:

    * ``early_weight`` w > 1: the slots of the first ``early_frames`` frames count w times
      in the objective. Those are where the stage must *choose* (tempo, groove) from its
      MuLan prefix; later frames can mostly be predicted by continuing what came before.
      ``early_frames`` > 0 alone adds their mean as ``metrics["loss_early"]``.
    * ``input_noise`` p > 0: each teacher-forced input token (not the BOS, not the targets)
      is replaced by a uniformly random code with probability p (``noise_key``), so that
      copying the history is less reliable and the prefix is worth more.
    """
    cfg = model.cfg
    inputs, targets, layout, cond = teacher_forcing(cfg, codes_btk, cond_bt)
    if input_noise > 0:
        if noise_key is None:
            raise ValueError("input_noise > 0 needs a noise_key")
        k1, k2 = jax.random.split(noise_key)
        hit = jax.random.bernoulli(k1, input_noise, inputs.shape)
        hit &= (inputs < cfg.vocab)                          # real codes only: not BOS/pad
        rnd = jax.random.randint(k2, inputs.shape, 0, cfg.vocab, inputs.dtype)
        inputs = jnp.where(hit, rnd, inputs)
    logits = model(mulan_bm, inputs, layout, cond, drop_b, dropout_key)
    ce = optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.minimum(targets, cfg.vocab - 1))
    w = jnp.broadcast_to(jnp.asarray(layout.valid)[None], ce.shape).astype(jnp.float32)
    loss = jnp.sum(ce * w) / jnp.sum(w)
    acc = jnp.sum((jnp.argmax(logits, -1) == targets) * w) / jnp.sum(w)
    metrics: dict[str, Any] = {"loss": loss, "accuracy": acc}
    objective = loss
    if early_frames > 0:
        early = stage_pattern(cfg).layout(codes_btk.shape[1]).frame < early_frames   # [s, n]
        ew = w * jnp.asarray(early, jnp.float32)[None]
        metrics["loss_early"] = jnp.sum(ce * ew) / jnp.maximum(jnp.sum(ew), 1.0)
        if early_weight != 1.0:
            we = w + (early_weight - 1.0) * ew
            objective = jnp.sum(ce * we) / jnp.sum(we)
    if cfg.levels > 1:
        lv = jnp.asarray(layout.level)[None]
        for q in range(cfg.levels):
            wq = w * (lv == q)
            metrics[f"loss_q{q}"] = jnp.sum(ce * wq) / jnp.maximum(jnp.sum(wq), 1.0)
    return objective, metrics


def sequence_logprob(model: StageLM, mulan_bm: jax.Array, codes_btk: jax.Array,
                     cond_bt: jax.Array | None = None,
                     dropout_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Per-row log-likelihood of the codes under their MuLan prefix (conditional).

    Returns ``(logp [b], slots [b])``: the sum of log p over the pattern's valid
    slots and how many slots that is (the same for every row).
    """
    cfg = model.cfg
    inputs, targets, layout, cond = teacher_forcing(cfg, codes_btk, cond_bt)
    drop = jnp.zeros((codes_btk.shape[0],), bool)
    logits = model(mulan_bm, inputs, layout, cond, drop, dropout_key)
    ce = optax.softmax_cross_entropy_with_integer_labels(
        logits, jnp.minimum(targets, cfg.vocab - 1))
    w = jnp.broadcast_to(jnp.asarray(layout.valid)[None], ce.shape).astype(jnp.float32)
    return -jnp.sum(ce * w, axis=tuple(range(1, ce.ndim))), jnp.sum(w, axis=tuple(
        range(1, w.ndim)))


def prefix_contrast_loss(model: StageLM, mulan_bm: jax.Array, codes_btk: jax.Array,
                         beta: float = 1.0, dropout_key: jax.Array | None = None
                         ) -> tuple[jax.Array, dict]:
    """Prefix-contrast objective on twin pairs (rows 2i, 2i+1: one passage at two tempi).

    For each row x with its own prefix c and its twin's prefix c', the log-likelihood
    ratio Δ = log p(x | c) − log p(x | c') (summed over the crop) can only come from
    what the two prefixes say differently about the same passage — its tempo. Teacher
    forcing barely rewards reading it (the next token is predicted from the history),
    so this term does: ``mean softplus(−β Δ)`` = −log σ(βΔ), the Bradley–Terry /
    DPO form with the twin's prefix as the rejected condition. Both prefixes are scored
    in one batched forward pass. Returns ``(loss, metrics)`` with the mean Δ per slot
    (``gap``) and the fraction of rows whose own prefix wins (``own_wins``).
    """
    b = codes_btk.shape[0]
    if b % 2:
        raise ValueError(f"prefix_contrast_loss takes twin pairs: an even batch, got {b}")
    swap = jnp.arange(b) ^ 1                                  # 0<->1, 2<->3, ...
    logp, slots = sequence_logprob(
        model, jnp.concatenate([mulan_bm, mulan_bm[swap]]),
        jnp.concatenate([codes_btk, codes_btk]), dropout_key=dropout_key)
    delta = logp[:b] - logp[b:]
    loss = jnp.mean(jax.nn.softplus(-beta * delta))
    return loss, {"contrast": loss, "gap": jnp.mean(delta / slots[:b]),
                  "own_wins": jnp.mean(delta > 0)}
