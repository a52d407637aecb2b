"""Diversity embedding and reward (DESIGN §6.3, §8).

An audio embedder trained self-supervised, as in the CFG-distillation paper:
two *non-overlapping* chunks of the same clip are a positive pair, chunks of
other clips in the batch are negatives (symmetric InfoNCE with a learned
temperature, :func:`info_nce`). It is trained separately from MuLan and never
sees captions, so moving along MuLan's text-aligned axes is not what it
rewards; it captures what stays constant within a piece of music (timbre,
texture, register, tempo feel) and differs between pieces.

Reward: ``r_D(y1, y2) = 1 − cos(E(y1), E(y2))`` for two generations of the
same prompt (:class:`DiversityReward`).

Model: log-mel → per-clip level normalisation (gain-invariant) → 1-D conv
stack over time (strided) → mean + std pooling → linear → unit sphere.

Dimension legend: ``b`` batch, ``n`` samples, ``t`` frames, ``m`` mel bands,
``d`` width, ``e`` embedding.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
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
    "DiversityConfig",
    "DiversityEmbedder",
    "DiversityError",
    "info_nce",
    "embed",
    "embed_batched",
    "diversity",
    "save_diversity",
    "load_diversity",
    "DiversityReward",
]


class DiversityError(MusicrlError, ValueError):
    """A diversity model or its inputs could not be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class DiversityConfig:
    sample_rate: int = opt(16_000, "audio sample rate (Hz)", min=8000)
    n_fft: int = opt(1024, "STFT size of the log-mel front end", min=64)
    hop: int = opt(256, "STFT hop (samples)", min=16)
    n_mels: int = opt(64, "mel bands", min=8)
    widths: tuple[int, ...] = opt((96, 128, 160, 192), "conv widths; each layer after the "
                                  "first halves the frame rate", min=4)
    kernel: int = opt(5, "temporal kernel size of the convs", min=1)
    dim: int = opt(128, "embedding dimension", min=2)
    init_temperature: float = opt(0.1, "initial InfoNCE temperature (learned)", min=1e-3)


register_presets(DiversityConfig, {
    "tiny": DiversityConfig(n_fft=256, hop=128, n_mels=16, widths=(8, 8), kernel=3, dim=8),
    "small": DiversityConfig(),
    "base": DiversityConfig(widths=(128, 192, 256, 256, 256), dim=256),
})


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


class DiversityEmbedder(nnx.Module):
    """Waveform [b, n] → unit embedding [b, e]."""

    def __init__(self, cfg: DiversityConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dims = (cfg.n_mels, *cfg.widths)
        self.convs = nnx.List([
            nnx.Conv(dims[i], dims[i + 1], kernel_size=(cfg.kernel,),
                     strides=(1 if i == 0 else 2,), padding="SAME", rngs=rngs)
            for i in range(len(cfg.widths))])
        self.norms = nnx.List([nnx.LayerNorm(d, rngs=rngs) for d in cfg.widths])
        self.proj = nnx.Linear(2 * cfg.widths[-1], cfg.dim, rngs=rngs)
        self.log_scale = nnx.Param(jnp.asarray(np.log(1.0 / cfg.init_temperature), jnp.float32))

    def __call__(self, wav_bn: jax.Array) -> jax.Array:
        c = self.cfg
        x_btm = log_mel(wav_bn, sr=c.sample_rate, n_fft=c.n_fft, hop=c.hop, n_mels=c.n_mels)
        h_btd = (x_btm - jnp.mean(x_btm, axis=(1, 2), keepdims=True)) / 4.0
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h_btd = jax.nn.gelu(norm(conv(h_btd)))
        pooled_bd = jnp.concatenate([h_btd.mean(1), h_btd.std(1)], axis=-1)
        return _unit(self.proj(pooled_bd))


def info_nce(a_be: jax.Array, b_be: jax.Array, log_scale: jax.Array
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Symmetric InfoNCE: row i of ``a`` and row i of ``b`` are the positive pair.

    Returns (loss, metrics with in-batch top-1 accuracy and the temperature).
    """
    scale = jnp.exp(jnp.minimum(log_scale, np.log(100.0)))
    logits = scale * a_be @ b_be.T
    labels = jnp.arange(a_be.shape[0])
    lsm_a = jax.nn.log_softmax(logits, axis=1)
    lsm_b = jax.nn.log_softmax(logits, axis=0)
    loss = -0.5 * (jnp.mean(lsm_a[labels, labels]) + jnp.mean(lsm_b[labels, labels]))
    acc = jnp.mean(jnp.argmax(logits, axis=1) == labels)
    return loss, {"loss": loss, "batch_acc": acc, "temperature": 1.0 / scale}


def contrastive_loss(model: DiversityEmbedder, a_bn: jax.Array, b_bn: jax.Array
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """InfoNCE between embeddings of the two chunks of each clip (one forward pass)."""
    e = model(jnp.concatenate([a_bn, b_bn]))
    return info_nce(e[: a_bn.shape[0]], e[a_bn.shape[0]:], model.log_scale[...])


@nnx.jit
def embed(model: DiversityEmbedder, wav_bn: jax.Array) -> jax.Array:
    """Batched, jitted embedding [b, e] of waveforms [b, n]."""
    return model(wav_bn)


def embed_batched(model: DiversityEmbedder, wav_bn: np.ndarray, batch: int = 32) -> np.ndarray:
    """Embeddings [N, e] of many clips (one compiled shape: the last chunk is padded)."""
    from musicrl.audio import map_padded

    if len(wav_bn) == 0:
        return np.zeros((0, model.cfg.dim), np.float32)
    return map_padded(lambda x: embed(model, jnp.asarray(x)), wav_bn, batch)


def diversity(e1_be: np.ndarray, e2_be: np.ndarray) -> np.ndarray:
    """r_D = 1 − cos(e1, e2) per row, in [0, 2]."""
    e1 = e1_be / np.maximum(np.linalg.norm(e1_be, axis=-1, keepdims=True), 1e-8)
    e2 = e2_be / np.maximum(np.linalg.norm(e2_be, axis=-1, keepdims=True), 1e-8)
    return (1.0 - np.sum(e1 * e2, axis=-1)).astype(np.float32)


def save_diversity(path: str | Path, model: DiversityEmbedder, meta: dict[str, Any],
                   dtype: Any = None) -> Path:
    """Inference weights + meta (``meta['config']`` is the model config) to ``path``."""
    from musicrl.checkpoint import save_weights
    from musicrl.config import to_dict

    save_weights(path, model, meta={**meta, "component": "diversity",
                                    "config": to_dict(model.cfg)}, dtype=dtype)
    return Path(path)


def load_diversity(path: str | Path) -> tuple[DiversityEmbedder, dict[str, Any]]:
    """Loads a diversity embedder from a weights folder or a training work dir (its weights/)."""
    from musicrl.checkpoint import load_weights
    from musicrl.config import from_dict

    path = Path(path)
    if not (path / "meta.json").exists() and (path / "weights" / "meta.json").exists():
        path = path / "weights"
    if not (path / "meta.json").exists():
        raise DiversityError(
            f"{path}: no diversity weights (meta.json + weights.npz); train them with "
            "`musicrl train diversity` (they land in <workdir>/weights) or pass "
            "assets/small/diversity")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("component") != "diversity":
        raise DiversityError(f"{path} holds {meta.get('component', 'unknown')!r} weights, "
                             "not a diversity embedder")
    model = DiversityEmbedder(from_dict(DiversityConfig, meta["config"]), rngs=nnx.Rngs(0))
    load_weights(path, model)
    return model, meta


class DiversityReward:
    """The diversity reward r_D = 1 − cos(E(y1), E(y2)) (DESIGN §8).

    * ``pair(y1_bn, y2_bn) -> float[b]``: r_D of row i of ``y1`` against row i of ``y2``;
    * ``reward(prompts, audio_bn) -> float[b]``: for each generation, the mean r_D
      to the *other* generations of the same prompt in the batch (0 for a
      generation whose prompt occurs once: there is nothing to differ from).
    """

    def __init__(self, weights_dir: str | Path = "assets/small/diversity", batch: int = 16):
        self.model, self.meta = load_diversity(weights_dir)
        self.batch = batch

    def embed(self, audio_bn: np.ndarray) -> np.ndarray:
        audio_bn = np.asarray(audio_bn, np.float32)
        if audio_bn.ndim != 2:
            raise DiversityError(f"audio must be [batch, samples], got shape {audio_bn.shape}")
        return embed_batched(self.model, audio_bn, self.batch)

    def pair(self, y1_bn: np.ndarray, y2_bn: np.ndarray) -> np.ndarray:
        if np.shape(y1_bn)[0] != np.shape(y2_bn)[0]:
            raise DiversityError(f"y1 and y2 need the same batch size, got "
                                 f"{np.shape(y1_bn)[0]} and {np.shape(y2_bn)[0]}")
        return diversity(self.embed(y1_bn), self.embed(y2_bn))

    def __call__(self, prompts: Sequence[str], audio_bn: np.ndarray) -> np.ndarray:
        if len(prompts) != np.shape(audio_bn)[0]:
            raise DiversityError(f"{len(prompts)} prompts for {np.shape(audio_bn)[0]} clips")
        e = self.embed(audio_bn)
        dist = 1.0 - e @ e.T
        p = np.asarray(list(prompts), dtype=object)
        same = (p[:, None] == p[None, :]) & ~np.eye(len(p), dtype=bool)
        count = same.sum(1)
        return np.where(count > 0, (dist * same).sum(1) / np.maximum(count, 1), 0.0
                        ).astype(np.float32)
