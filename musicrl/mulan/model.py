"""MuLan (Huang et al. 2022): two towers into one unit sphere, trained contrastively,
and MusicLM's conditioning tokens over that sphere.

Dimension legend: ``b`` batch, ``n`` samples, ``l`` text tokens, ``d`` tower
width, ``e`` embedding dimension (128), ``q`` conditioning levels (12).

* ``embed_text(ids, mask)`` and ``embed_audio(wav)`` project each tower's
  pooled feature to ``e`` dims and normalize it to unit length.
* The temperature is learned as ``log_scale`` (logits = exp(log_scale)·cos),
  started at 1/0.07 and capped at 100 (CLIP, Radford et al. 2021 §2.5).
* Conditioning tokens (MusicLM, Agostinelli et al. 2023 §3.1): a residual VQ
  (:class:`musicrl.codec.quantizer.ResidualVQ`, 12 levels × 1024 by default)
  fitted on *audio* embeddings; the generator trains on the tokens of the
  target clip's audio and is prompted with those of the text at inference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from flax import nnx

from musicrl.codec.quantizer import ResidualVQ
from musicrl.mulan.audio import AudioTower
from musicrl.mulan.config import MulanConfig
from musicrl.mulan.text import TextTower, encode_texts

__all__ = ["Mulan", "info_nce", "label_prompt_loss", "MAX_LOG_SCALE"]

MAX_LOG_SCALE = float(np.log(100.0))


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def info_nce(text_be: jax.Array, audio_be: jax.Array, log_scale: jax.Array) -> jax.Array:
    """Symmetric InfoNCE over a batch of matching pairs (row i of each is a pair).

    ``(CE(softmax over audio for each text) + CE(softmax over texts for each audio)) / 2``
    with logits ``exp(log_scale) · text @ audio.T`` (CLIP's loss).
    """
    logits = jnp.exp(jnp.minimum(log_scale, MAX_LOG_SCALE)) * text_be @ audio_be.T
    diag = jnp.arange(logits.shape[0])
    t2a = -jnp.mean(jax.nn.log_softmax(logits, axis=1)[diag, diag])
    a2t = -jnp.mean(jax.nn.log_softmax(logits, axis=0)[diag, diag])
    return 0.5 * (t2a + a2t)


def label_prompt_loss(audio_be: jax.Array, label_ce: jax.Array, group_c: jax.Array,
                      target_bg: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy of each clip's label among its attribute's label phrases, and accuracy.

    ``label_ce`` holds one embedded phrase per (attribute, value), ``group_c`` the
    attribute index of each; ``target_bg[b, g]`` is the column of clip b's value of
    attribute g, or −1 where the clip has no such label (left out). The softmax of
    attribute g runs over its own columns only, at the contrastive temperature: the
    zero-shot classifier of ``musicrl eval mulan``, trained on the train labels.
    """
    logits = scale * audio_be @ label_ce.T                                  # [b, c]
    losses, hits, counts = [], [], []
    for g in range(target_bg.shape[1]):
        lsm = jax.nn.log_softmax(jnp.where(group_c[None, :] == g, logits, -jnp.inf), axis=1)
        t = target_bg[:, g]
        ok = t >= 0
        nll = -jnp.take_along_axis(lsm, jnp.maximum(t, 0)[:, None], axis=1)[:, 0]
        pred = jnp.argmax(jnp.where(group_c[None, :] == g, logits, -jnp.inf), axis=1)
        losses.append(jnp.sum(jnp.where(ok, nll, 0.0)))
        hits.append(jnp.sum(ok & (pred == t)))
        counts.append(jnp.sum(ok))
    n = jnp.maximum(sum(counts), 1)
    return sum(losses) / n, sum(hits) / n


def _vocab_numbers(tokenizer: tokenizers.Tokenizer, vocab: int) -> np.ndarray:
    from musicrl.mulan.text import number_values

    vals = number_values(tokenizer)
    return np.pad(vals, (0, max(vocab - len(vals), 0)))[:vocab]


class Mulan(nnx.Module):
    def __init__(self, cfg: MulanConfig, tokenizer: tokenizers.Tokenizer, *, rngs: nnx.Rngs):
        """``rngs`` needs a ``vq`` stream (dead-code restarts of the conditioning RVQ)."""
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.audio = AudioTower(cfg, rngs=rngs)
        self.audio_proj = nnx.Linear(self.audio.out_dim, cfg.embed_dim, rngs=rngs)
        self.text = TextTower(cfg.vocab_size, cfg.max_text_len, cfg.text_width, cfg.text_depth,
                              cfg.text_heads, cfg.mlp_ratio, rngs=rngs,
                              number_values=(_vocab_numbers(tokenizer, cfg.vocab_size)
                                             if cfg.numeric_features else None))
        self.text_proj = nnx.Linear(cfg.text_width, cfg.embed_dim, rngs=rngs)
        self.log_scale = nnx.Param(jnp.asarray(np.log(1 / 0.07), jnp.float32))
        self.rvq = ResidualVQ(cfg.embed_dim, cfg.rvq_levels, cfg.rvq_codebook_size,
                              decay=cfg.rvq_decay, rngs=rngs)

    # ---------------------------------------------------------------- embeddings

    def embed_text(self, ids_bl: jax.Array, mask_bl: jax.Array) -> jax.Array:
        """Token ids [b, l] + mask [b, l] → unit-norm embeddings [b, e]."""
        return _unit(self.text_proj(self.text(ids_bl, mask_bl)))

    def embed_audio(self, wav_bn: jax.Array) -> jax.Array:
        """Waveform [b, n] at 16 kHz → unit-norm embeddings [b, e]."""
        return _unit(self.audio_proj(self.audio(wav_bn)))

    def audio_frames(self, wav_bn: jax.Array) -> jax.Array:
        """Per-frame audio-tower features [b, t, d] at ``cfg.frame_rate`` (25 Hz)."""
        return self.audio.frames(wav_bn)

    def tokenize(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Prompts → (ids int32 [b, l], mask bool [b, l]) with this model's tokenizer."""
        return encode_texts(self.tokenizer, prompts, self.cfg.max_text_len)

    def embed_prompts(self, prompts: list[str]) -> jax.Array:
        """Prompts (strings) → unit-norm embeddings [b, e]."""
        ids, mask = self.tokenize(list(prompts))
        return _embed_text_jit(self, jnp.asarray(ids), jnp.asarray(mask))

    def contrastive_loss(self, ids_bl: jax.Array, mask_bl: jax.Array, wav_bn: jax.Array,
                         neg: tuple[jax.Array, jax.Array, jax.Array] | None = None,
                         labels: tuple[jax.Array, ...] | None = None,
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Symmetric InfoNCE of a batch of (caption, clip) pairs, and metrics.

        ``neg`` = (ids [b·j, l], mask [b·j, l], valid [b·j]): extra *hard negative*
        captions (rewritten captions of the batch's own clips, e.g. with the mode or
        tempo flipped); each clip's audio→text softmax runs over the batch's captions
        and all valid negatives (NegCLIP, Yuksekgonul et al. 2023).

        ``labels`` = (ids [c, l], mask [c, l], group [c], target [b, g], weight): adds
        ``weight`` × the label-prompt loss of :func:`label_prompt_loss` (label phrases
        as captions of every clip that has the label, as in UniCL, Yang et al. 2022).
        """
        t, a = self.embed_text(ids_bl, mask_bl), self.embed_audio(wav_bn)
        scale = jnp.exp(jnp.minimum(self.log_scale[...], MAX_LOG_SCALE))
        sims = t @ a.T
        metrics = {}
        if neg is None:
            loss = info_nce(t, a, self.log_scale[...])
        else:
            n_ids, n_mask, n_valid = neg
            n = self.embed_text(n_ids, n_mask)
            diag = jnp.arange(t.shape[0])
            t2a = -jnp.mean(jax.nn.log_softmax(scale * sims, axis=1)[diag, diag])
            a2n = jnp.where(n_valid[None, :], scale * (a @ n.T), -jnp.inf)   # [b, b·j]
            a2t_all = jnp.concatenate([scale * sims.T, a2n], axis=1)
            a2t = -jnp.mean(jax.nn.log_softmax(a2t_all, axis=1)[diag, diag])
            loss = 0.5 * (t2a + a2t)
            # how often the true caption beats its own rewritten versions
            j = n.shape[0] // t.shape[0]
            own = (a[:, None, :] * n.reshape(t.shape[0], j, -1)).sum(-1)        # [b, j]
            ok = n_valid.reshape(t.shape[0], j)
            wins = (jnp.diag(sims)[:, None] > own) & ok
            metrics["hard_negative_acc"] = jnp.sum(wins) / jnp.maximum(jnp.sum(ok), 1)
        if labels is not None:
            l_ids, l_mask, group, target, weight = labels
            lab_loss, lab_acc = label_prompt_loss(a, self.embed_text(l_ids, l_mask), group,
                                                  target, scale)
            metrics["label_loss"], metrics["label_acc"] = lab_loss, lab_acc
            metrics["nce_loss"] = loss
            loss = loss + weight * lab_loss
        acc = jnp.mean(jnp.argmax(sims, axis=1) == jnp.arange(sims.shape[0]))
        return loss, {"loss": loss, "temperature": jnp.exp(-self.log_scale[...]),
                      "batch_t2a_acc": acc, **metrics}

    # ---------------------------------------------------------------- conditioning tokens

    def tokens_for_embeddings(self, emb_be: jax.Array, num_levels: int | None = None
                              ) -> jax.Array:
        """Embeddings [b, e] → conditioning tokens int32 [b, q]."""
        return self.rvq.encode(emb_be[:, None, :], num_levels)[:, 0]

    def embeddings_for_tokens(self, tokens_bq: jax.Array) -> jax.Array:
        """Conditioning tokens [b, q'] → reconstructed embeddings [b, e] (q' ≤ q levels)."""
        return self.rvq.decode(tokens_bq[:, None, :])[:, 0]

    def tokens_for_text(self, prompts: list[str]) -> jax.Array:
        """Prompts → the 12 conditioning tokens [b, q] of their text embeddings (inference)."""
        return self.tokens_for_embeddings(self.embed_prompts(prompts))

    def tokens_for_audio(self, wav_bn: jax.Array) -> jax.Array:
        """Waveform [b, n] → the 12 conditioning tokens [b, q] of its audio embedding (training)."""
        return self.tokens_for_embeddings(_embed_audio_jit(self, jnp.asarray(wav_bn)))


@nnx.jit
def _embed_text_jit(model: Mulan, ids: jax.Array, mask: jax.Array) -> jax.Array:
    return model.embed_text(ids, mask)


@nnx.jit
def _embed_audio_jit(model: Mulan, wav: jax.Array) -> jax.Array:
    return model.embed_audio(wav)


def embed_audio_batched(model: Mulan, wav_bn: np.ndarray, batch: int = 16) -> np.ndarray:
    """Audio embeddings [b, e] of many clips, ``batch`` at a time (jitted)."""
    out = [np.asarray(_embed_audio_jit(model, jnp.asarray(wav_bn[i:i + batch])))
           for i in range(0, len(wav_bn), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.cfg.embed_dim), np.float32)


def window_starts(n: int, window: int, hop: int) -> list[int]:
    """Start samples of the windows that cover ``n`` samples (the last one ends at ``n``)."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


def embed_audio_long(model: Mulan, wav_bn: np.ndarray, *, hop_fraction: float = 0.75,
                     batch: int = 16) -> np.ndarray:
    """Unit audio embeddings [b, e] of clips of any length (DESIGN §8).

    A clip longer than the tower's crop is cut into crop-long windows (overlap
    ``1 − hop_fraction``, the last window flush with the end); the window
    embeddings are averaged and renormalized. Shorter clips are zero-padded.
    """
    wav_bn = np.asarray(wav_bn, np.float32)
    window = model.cfg.crop_samples
    if wav_bn.shape[1] < window:
        wav_bn = np.pad(wav_bn, ((0, 0), (0, window - wav_bn.shape[1])))
    starts = window_starts(wav_bn.shape[1], window, max(1, int(window * hop_fraction)))
    win = np.stack([wav_bn[:, s:s + window] for s in starts], axis=1)  # [b, w, n]
    emb = embed_audio_batched(model, win.reshape(-1, window), batch).reshape(
        len(wav_bn), len(starts), -1).mean(axis=1)
    return emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-8)


def embed_prompts_batched(model: Mulan, prompts: list[str], batch: int = 64) -> np.ndarray:
    """Text embeddings [b, e] of many prompts, ``batch`` at a time (jitted)."""
    out = [np.asarray(model.embed_prompts(prompts[i:i + batch]))
           for i in range(0, len(prompts), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.cfg.embed_dim), np.float32)
