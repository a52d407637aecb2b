"""Quality (MOS) predictor: a reference-free score in [1, 5] for a clip (DESIGN §6.2).

Model: log-mel → per-clip level normalisation → 1-D conv stack over time (mel
bands as channels, strided) → mean + std pooling over time → MLP →
``1 + 4 σ(·)``. Optionally (``freq_widths``) a 2-D conv branch over the
(time, mel) plane, max-pooled over frequency, joins the pooled features: the
1-D stack sees each mel band as its own channel and so learns band edges only
where training put them (a low-pass at 3 kHz but not at 4 kHz); the 2-D branch
detects a pattern at any frequency. Subtracting each clip's mean log-mel makes the score invariant
to gain, so it judges the *shape* of the spectrogram (noise floors, missing
bands, clipping harmonics, gaps, codec smearing), not loudness.

Objective (see :func:`quality_loss`), on real clips and graded degradations of
them (:mod:`rewards.degrade`):

* **pairwise ranking** (RankNet / Bradley–Terry): for two versions ``i, j`` of
  the *same* clip where ``i`` is known to be better (clean vs degraded, or a
  milder vs a harsher setting of the same family), ``−log σ(k (s_i − s_j))``.
  This is what the predictor is for — ordering outputs — and it needs no
  claim about absolute MOS values, which we do not have;
* **regression** to a target MOS ``4.5 − 3·severity`` with a small weight: it
  calibrates different families and clips against each other (a ranking loss
  alone only orders versions of one clip) and keeps scores away from the
  saturated ends of the sigmoid. The target is a judgement, hence the small weight.

When human ratings exist, :func:`rating_loss` (regression to the 1–5 rating plus
the same ranking loss over pairs of rows with different ratings) finetunes it.

Dimension legend: ``b`` batch, ``n`` samples, ``t`` frames, ``m`` mel bands,
``d`` width, ``c`` channels of the 2-D branch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.config import opt, register_presets
from musicrl.errors import MusicrlError
from musicrl.spectral import log_mel

__all__ = [
    "QualityConfig",
    "QualityModel",
    "QualityError",
    "quality_loss",
    "rank_loss",
    "rating_loss",
    "score_batched",
    "save_quality",
    "load_quality",
    "QualityReward",
]

TARGET_CLEAN, TARGET_SPAN = 4.5, 3.0  # regression target: 4.5 - 3 * severity


class QualityError(MusicrlError, ValueError):
    """A quality model or its inputs could not be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    sample_rate: int = opt(16_000, "audio sample rate (Hz)", min=8000)
    n_fft: int = opt(1024, "STFT size of the log-mel front end", min=64)
    hop: int = opt(256, "STFT hop (samples)", min=16)
    n_mels: int = opt(64, "mel bands", min=8)
    widths: tuple[int, ...] = opt((64, 96, 128, 128), "conv widths; each layer after the "
                                  "first halves the frame rate", min=4)
    kernel: int = opt(5, "temporal kernel size of the convs", min=1)
    hidden: int = opt(64, "width of the pooled MLP head", min=4)
    freq_widths: tuple[int, ...] = opt((), "2-D (time × mel) conv widths of a branch max-pooled "
                                       "over frequency (a band edge is one feature wherever it "
                                       "lies); empty: no branch", min=1)


register_presets(QualityConfig, {
    "tiny": QualityConfig(n_fft=256, hop=128, n_mels=16, widths=(8, 8), kernel=3, hidden=8),
    "small": QualityConfig(freq_widths=(8, 16, 16)),
    "base": QualityConfig(widths=(128, 192, 256, 256, 256), hidden=128, freq_widths=(16, 32, 32)),
})


class QualityModel(nnx.Module):
    """Waveform [b, n] → score [b] in [1, 5]."""

    def __init__(self, cfg: QualityConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dims = (cfg.n_mels, *cfg.widths)
        self.convs = nnx.List([
            nnx.Conv(dims[i], dims[i + 1], kernel_size=(cfg.kernel,),
                     strides=(1 if i == 0 else 2,), padding="SAME", rngs=rngs)
            for i in range(len(cfg.widths))])
        self.norms = nnx.List([nnx.LayerNorm(d, rngs=rngs) for d in cfg.widths])
        fw = (1, *cfg.freq_widths)
        self.fconvs = nnx.List([
            nnx.Conv(fw[i], fw[i + 1], kernel_size=(3, 3), strides=(1, 1) if i == 0 else (2, 2),
                     padding="SAME", rngs=rngs) for i in range(len(cfg.freq_widths))])
        pooled = 2 * cfg.widths[-1] + (2 * cfg.freq_widths[-1] if cfg.freq_widths else 0)
        self.head1 = nnx.Linear(pooled, cfg.hidden, rngs=rngs)
        self.head2 = nnx.Linear(cfg.hidden, 1, rngs=rngs)

    def features(self, wav_bn: jax.Array) -> jax.Array:
        """Normalised log-mel [b, t, m]: each clip's mean log-mel level removed."""
        c = self.cfg
        x_btm = log_mel(wav_bn, sr=c.sample_rate, n_fft=c.n_fft, hop=c.hop, n_mels=c.n_mels)
        return (x_btm - jnp.mean(x_btm, axis=(1, 2), keepdims=True)) / 4.0

    def logit(self, wav_bn: jax.Array) -> jax.Array:
        """Unsquashed score [b]."""
        x_btm = self.features(wav_bn)
        h_btd = x_btm
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h_btd = jax.nn.gelu(norm(conv(h_btd)))
        pooled = [h_btd.mean(1), h_btd.std(1)]
        if len(self.fconvs):
            g_btmc = x_btm[..., None]
            for conv in self.fconvs:
                g_btmc = jax.nn.gelu(conv(g_btmc))
            g_btc = g_btmc.max(axis=2)  # max over frequency: where the pattern is does not matter
            pooled += [g_btc.mean(1), g_btc.std(1)]
        pooled_bd = jnp.concatenate(pooled, axis=-1)
        return self.head2(jax.nn.gelu(self.head1(pooled_bd)))[:, 0]

    def __call__(self, wav_bn: jax.Array) -> jax.Array:
        """MOS-like score [b] in [1, 5]."""
        return 1.0 + 4.0 * jax.nn.sigmoid(self.logit(wav_bn))


# ----------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------

def rank_loss(score_b: jax.Array, group_b: jax.Array, better_bb: jax.Array,
              scale: float) -> jax.Array:
    """Mean RankNet loss ``−log σ(scale (s_i − s_j))`` over pairs with ``better[i, j]``.

    Args:
      score_b: scores; group_b: which clip each row is a version of (pairs are only
        formed inside a group); better_bb: bool, row i is known better than row j.
    """
    same = group_b[:, None] == group_b[None, :]
    mask = (better_bb & same).astype(score_b.dtype)
    diff = score_b[:, None] - score_b[None, :]
    losses = jax.nn.softplus(-scale * diff)  # = −log σ(scale · diff)
    return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def better_matrix(family_b: np.ndarray, severity_b: np.ndarray) -> np.ndarray:
    """[b, b] bool: i is known better than j (clean vs any, or same family and milder).

    ``family_b`` is -1 for clean rows. Pairs of different families are not ordered.
    """
    fam_i, fam_j = family_b[:, None], family_b[None, :]
    comparable = (fam_i == -1) | (fam_j == -1) | (fam_i == fam_j)
    return comparable & (severity_b[:, None] < severity_b[None, :])


def quality_loss(model: QualityModel, wav_bn: jax.Array, group_b: jax.Array,
                 severity_b: jax.Array, better_bb: jax.Array, *, rank_weight: float,
                 reg_weight: float, rank_scale: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Ranking + regression loss on versions of clips (module docstring)."""
    score = model(wav_bn)
    target = TARGET_CLEAN - TARGET_SPAN * severity_b
    reg = jnp.mean((score - target) ** 2)
    rank = rank_loss(score, group_b, better_bb, rank_scale)
    same = (group_b[:, None] == group_b[None, :]) & better_bb
    acc = jnp.sum((score[:, None] > score[None, :]) & same) / jnp.maximum(jnp.sum(same), 1)
    loss = rank_weight * rank + reg_weight * reg
    return loss, {"loss": loss, "rank": rank, "reg": reg, "pair_acc": acc}


def rating_loss(model: QualityModel, wav_bn: jax.Array, rating_b: jax.Array, *,
                rank_weight: float, rank_scale: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Finetuning on human ratings: MSE to the 1–5 rating + ranking over rows rated apart."""
    score = model(wav_bn)
    mse = jnp.mean((score - rating_b) ** 2)
    better = rating_b[:, None] > rating_b[None, :]
    rank = rank_loss(score, jnp.zeros_like(rating_b, jnp.int32), better, rank_scale)
    loss = mse + rank_weight * rank
    return loss, {"loss": loss, "mse": mse, "rank": rank}


# ----------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------

@nnx.jit
def _score_jit(model: QualityModel, wav_bn: jax.Array) -> jax.Array:
    return model(wav_bn)


def score_batched(model: QualityModel, wav_bn: np.ndarray, batch: int = 32) -> np.ndarray:
    """Scores [N] of clips [N, n] (one compiled shape: the last chunk is padded)."""
    from musicrl.audio import map_padded

    return map_padded(lambda x: _score_jit(model, jnp.asarray(x)), wav_bn, batch)


def save_quality(path: str | Path, model: QualityModel, meta: dict[str, Any],
                 dtype: Any = None) -> Path:
    """Inference weights + meta (``meta['config']`` is the model config) to ``path``."""
    from musicrl.checkpoint import save_weights
    from musicrl.config import to_dict

    save_weights(path, model, meta={**meta, "component": "quality",
                                    "config": to_dict(model.cfg)}, dtype=dtype)
    return Path(path)


def load_quality(path: str | Path) -> tuple[QualityModel, dict[str, Any]]:
    """Loads a quality model from a weights folder or a training work dir (its weights/).

    Raises:
      QualityError: the folder holds no quality weights (with what to run).
    """
    from musicrl.checkpoint import load_weights
    from musicrl.config import from_dict

    path = Path(path)
    if not (path / "meta.json").exists() and (path / "weights" / "meta.json").exists():
        path = path / "weights"
    if not (path / "meta.json").exists():
        raise QualityError(
            f"{path}: no quality weights (meta.json + weights.npz); train them with "
            "`musicrl train quality` (they land in <workdir>/weights) or pass assets/small/quality")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("component") != "quality":
        raise QualityError(f"{path} holds {meta.get('component', 'unknown')!r} weights, "
                           "not a quality model")
    model = QualityModel(from_dict(QualityConfig, meta["config"]), rngs=nnx.Rngs(0))
    load_weights(path, model)
    return model, meta


class QualityReward:
    """``reward(prompts, audio_bn) -> float[b]`` in [0, 1]: (MOS − 1) / 4 (DESIGN §8).

    The prompt is not used (the score is reference-free); it is accepted so every
    reward has the same signature.
    """

    def __init__(self, weights_dir: str | Path = "assets/small/quality", batch: int = 16):
        self.model, self.meta = load_quality(weights_dir)
        self.batch = batch

    def mos(self, audio_bn: np.ndarray) -> np.ndarray:
        """Scores [b] in [1, 5]."""
        audio_bn = np.asarray(audio_bn, np.float32)
        if audio_bn.ndim != 2:
            raise QualityError(f"audio must be [batch, samples], got shape {audio_bn.shape}")
        return score_batched(self.model, audio_bn, self.batch)

    def __call__(self, prompts: Any, audio_bn: np.ndarray) -> np.ndarray:
        return ((self.mos(audio_bn) - 1.0) / 4.0).astype(np.float32)
