"""MuLan: the joint text–audio embedding and its conditioning tokens (DESIGN §6.1).

Public API::

    Mulan(cfg, tokenizer, rngs=nnx.Rngs(0, vq=1))
      .embed_text(ids, mask) / .embed_audio(wav) -> unit-norm [b, 128]
      .embed_prompts(prompts) -> [b, 128]; .audio_frames(wav) -> [b, t, d] at 25 Hz
      .tokens_for_text(prompts) / .tokens_for_audio(wav) -> int32 [b, 12]
    train_text_tokenizer(captions, vocab_size) -> tokenizers.Tokenizer
    save_mulan(path, model, meta) / load_mulan(path) -> (Mulan, meta)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musicrl.errors import MusicrlError
from musicrl.mulan.conditioning import fit_conditioning_rvq, reconstruction_cosine
from musicrl.mulan.config import MulanConfig
from musicrl.mulan.model import (
    Mulan,
    embed_audio_batched,
    embed_audio_long,
    embed_prompts_batched,
    info_nce,
)
from musicrl.mulan.text import encode_texts, train_text_tokenizer

__all__ = [
    "MulanConfig", "Mulan", "MulanError", "info_nce", "train_text_tokenizer", "encode_texts",
    "embed_audio_batched", "embed_audio_long", "embed_prompts_batched", "fit_conditioning_rvq",
    "reconstruction_cosine", "save_mulan", "load_mulan", "TOKENIZER_FILE",
]

TOKENIZER_FILE = "tokenizer.json"


class MulanError(MusicrlError, ValueError):
    """A MuLan folder is missing or incomplete; the message says what to do."""


def save_mulan(path: str | Path, model: Mulan, meta: dict[str, Any], *, dtype: Any = None,
               inference_only: bool = False) -> Path:
    """Writes weights (``save_weights``) and ``tokenizer.json`` to the folder ``path``.

    ``meta`` gets ``component`` and ``config`` (the model config) added. ``dtype`` (e.g.
    ``jnp.bfloat16``) casts floating weights; ``inference_only`` leaves out the RVQ's EMA
    statistics, which only training needs (``load_mulan`` accepts both).
    """
    from musicrl.checkpoint import save_weights
    from musicrl.codec.quantizer import TRAINING_ONLY
    from musicrl.config import to_dict

    path = Path(path)
    save_weights(path, model, meta={"component": "mulan", "config": to_dict(model.cfg), **meta},
                 dtype=dtype, skip=TRAINING_ONLY if inference_only else ())
    tmp = path / (TOKENIZER_FILE + ".tmp")
    model.tokenizer.save(str(tmp))
    tmp.replace(path / TOKENIZER_FILE)
    return path


def load_mulan(path: str | Path) -> tuple[Mulan, dict[str, Any]]:
    """Rebuilds MuLan from a folder of :func:`save_mulan` (or a work dir holding ``weights/``).

    Returns:
      (model, meta). Raises :class:`MulanError` / ``CheckpointError`` with what to do.
    """
    import tokenizers
    from flax import nnx

    from musicrl.checkpoint import load_weights
    from musicrl.codec.quantizer import TRAINING_ONLY
    from musicrl.config import from_dict

    path = Path(path)
    if not (path / "meta.json").exists() and (path / "weights" / "meta.json").exists():
        path = path / "weights"
    if not (path / "meta.json").exists() or not (path / TOKENIZER_FILE).exists():
        raise MulanError(
            f"{path}: not a MuLan folder (needs meta.json, weights.npz and {TOKENIZER_FILE}); "
            "train one with `musicrl train mulan` and pass its <workdir>/weights")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("component") != "mulan":
        raise MulanError(f"{path} holds a {meta.get('component')!r} model, not MuLan")
    tok = tokenizers.Tokenizer.from_file(str(path / TOKENIZER_FILE))
    model = Mulan(from_dict(MulanConfig, meta["config"]), tok, rngs=nnx.Rngs(0, vq=1))
    load_weights(path, model, optional=TRAINING_ONLY)
    return model, meta
