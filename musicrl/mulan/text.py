"""MuLan's text side: a byte-level BPE tokenizer trained on the captions, and the
text tower (a small pre-norm transformer, mean-pooled).

Dimension legend: ``b`` batch, ``l`` tokens, ``d`` width, ``v`` vocabulary.

Why byte-level BPE (HF ``tokenizers``): every string encodes (no unknown token,
whatever a user types into the prompt box) and decoding gives the normalized
text back exactly. Captions are lowercased and NFKC-normalized first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from flax import nnx
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

__all__ = ["PAD", "train_text_tokenizer", "encode_texts", "TextTower", "number_values",
           "numeric_features"]

PAD = "[PAD]"
_SPECIALS = (PAD, "[CLS]")


def train_text_tokenizer(captions: Iterable[str], vocab_size: int) -> tokenizers.Tokenizer:
    """Trains a byte-level BPE tokenizer on ``captions`` (``[PAD]`` is id 0).

    Args:
      captions: the training texts (e.g. every phrasing of every train clip).
      vocab_size: target vocabulary (at least 256 bytes + 2 specials + merges).
    """
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(_SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(captions), trainer=trainer)
    return tok


def encode_texts(tok: tokenizers.Tokenizer, texts: Sequence[str], max_len: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Texts → (token ids int32 [b, max_len], mask bool [b, max_len]), cut and padded.

    An empty text still gets one token (``[CLS]``) so that mean pooling is defined.
    """
    pad, cls = tok.token_to_id(PAD), tok.token_to_id("[CLS]")
    ids = np.full((len(texts), max_len), pad, np.int32)
    mask = np.zeros((len(texts), max_len), bool)
    for i, enc in enumerate(tok.encode_batch(list(texts))):
        row = enc.ids[:max_len] or [cls]
        ids[i, : len(row)] = row
        mask[i, : len(row)] = True
    return ids, mask


_NUMBER = re.compile(r"\d+(\.\d+)?")
# log2-value periods of the numeric features: 4 octaves down to 1/8 octave (≈ 9 %), so
# that 97 and 99 bpm are close and 97 and 130 are not.
NUMERIC_FREQS = tuple(2.0 ** k / 4.0 for k in range(6))


def number_values(tok: tokenizers.Tokenizer) -> np.ndarray:
    """float32 [vocab]: the value of every token that is a number ("97", "Ġ97"), else 0.

    Numbers the tokenizer splits into pieces ("1" + "71") get each piece's own value; the
    BPMs of the corpus (60–170) are whole tokens of the caption-trained vocabulary.
    """
    out = np.zeros(tok.get_vocab_size(), np.float32)
    for i in tok.get_vocab().values():
        text = tok.decode([i]).strip()
        if _NUMBER.fullmatch(text) and float(text) > 0:
            out[i] = float(text)
    return out


def numeric_features(values: jax.Array) -> jax.Array:
    """Values [...] → features [..., 1 + 2·len(NUMERIC_FREQS)] of log2(value); 0 where the
    value is 0 (not a number)."""
    x = jnp.log2(jnp.maximum(values, 1e-3))[..., None]
    ang = 2 * jnp.pi * x * jnp.asarray(NUMERIC_FREQS, x.dtype)
    f = jnp.concatenate([x / 8.0, jnp.sin(ang), jnp.cos(ang)], axis=-1)
    return jnp.where((values > 0)[..., None], f, 0.0)


class NumberValues(nnx.Variable):
    """The value of each vocabulary entry that is a number (not trained; from the tokenizer)."""


class _Block(nnx.Module):
    """Pre-norm transformer block: x + MHA(LN(x)); x + MLP(LN(x))."""

    def __init__(self, d: int, heads: int, mlp_ratio: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=d, decode=False,
                                           rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, d * mlp_ratio, rngs=rngs)
        self.down = nnx.Linear(d * mlp_ratio, d, rngs=rngs)

    def __call__(self, x_bld: jax.Array, mask_bl: jax.Array) -> jax.Array:
        att_mask = nnx.make_attention_mask(mask_bl, mask_bl)  # [b, 1, l, l]
        h = self.norm1(x_bld)
        x_bld = x_bld + self.attn(h, mask=att_mask)
        return x_bld + self.down(jax.nn.gelu(self.up(self.norm2(x_bld))))


class TextTower(nnx.Module):
    """Token ids → pooled text feature [b, d] (learned positions, masked mean pooling)."""

    def __init__(self, vocab: int, max_len: int, d: int, depth: int, heads: int,
                 mlp_ratio: int, *, rngs: nnx.Rngs, number_values: np.ndarray | None = None):
        """``number_values`` [vocab] (from :func:`number_values`) switches on the numeric
        features: a zero-initialized projection, so a tower grown from one without them
        starts with exactly its embeddings."""
        self.embed = nnx.Embed(vocab, d, rngs=rngs)
        if number_values is not None:
            if len(number_values) != vocab:
                raise ValueError(f"number_values has {len(number_values)} entries, the "
                                 f"vocabulary {vocab}")
            self.number_values = NumberValues(jnp.asarray(number_values, jnp.float32))
            self.numeric_proj = nnx.Param(jnp.zeros((1 + 2 * len(NUMERIC_FREQS), d)))
        else:
            self.number_values = self.numeric_proj = None
        self.pos = nnx.Param(jax.random.normal(rngs.params(), (max_len, d)) * 0.02)
        self.blocks = nnx.List([_Block(d, heads, mlp_ratio, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(d, rngs=rngs)

    def __call__(self, ids_bl: jax.Array, mask_bl: jax.Array) -> jax.Array:
        n_tok = ids_bl.shape[1]
        x = self.embed(ids_bl) + self.pos[:n_tok][None]
        if self.numeric_proj is not None:
            vals = jnp.take(self.number_values[...], ids_bl)
            x = x + numeric_features(vals) @ self.numeric_proj[...]
        for blk in self.blocks:
            x = blk(x, mask_bl)
        x = self.norm(x)
        w = mask_bl.astype(x.dtype)[..., None]
        return jnp.sum(x * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0)
