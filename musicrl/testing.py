"""A tiny, randomly initialised model bundle for tests and smoke runs.

``tiny_bundle(path)`` writes the components of a generator bundle (MuLan,
stage S, stage A, codec, and the semantic tokenizer whose tokens stage S
writes) with the ``tiny`` presets, mutually consistent (vocabularies,
levels), so ``Pipeline.from_pretrained(path)``
loads it in seconds. The audio it makes is noise-like: it is for testing the
plumbing (shapes, determinism, errors, the app), never for quality claims.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["tiny_bundle", "TINY_CAPTIONS"]

TINY_CAPTIONS = [
    "a calm piano piece in a minor key, slow, no drums",
    "lively folk tune on the fiddle with drums, fast, major",
    "Bach chorale for organ, mid-tempo, E major",
    "a sad waltz for strings and harp, slow",
    "upbeat rock groove with electric guitar and bass, 120 bpm",
]


def tiny_bundle(path: str | Path, seed: int = 0) -> Path:
    """Writes a random tiny bundle to ``path`` (mulan/, lm-semantic/, lm-acoustic/, codec/,
    semantic/)."""
    import numpy as np
    from flax import nnx

    from musicrl.checkpoint import save_weights
    from musicrl.codec.config import CodecConfig
    from musicrl.codec.model import Codec
    from musicrl.config import presets_of, to_dict
    from musicrl.lm.io import save_stage
    from musicrl.lm.stages import StageConfig, StageLM
    from musicrl.mulan import Mulan, MulanConfig, save_mulan, train_text_tokenizer
    from musicrl.semantic import SemanticTokenizer

    path = Path(path)
    mcfg = presets_of(MulanConfig)["tiny"]
    tok = train_text_tokenizer(TINY_CAPTIONS * 4, mcfg.vocab_size)
    save_mulan(path / "mulan", Mulan(mcfg, tok, rngs=nnx.Rngs(seed, vq=seed + 1)),
               meta={"note": "random tiny MuLan (musicrl.testing)"})
    ccfg = presets_of(CodecConfig)["tiny"]
    save_weights(path / "codec", Codec(ccfg, rngs=nnx.Rngs(seed, vq=seed + 1)),
                 meta={"component": "codec", "config": to_dict(ccfg),
                       "note": "random tiny codec (musicrl.testing)"})
    for name, preset in (("lm-semantic", "tiny"), ("lm-acoustic", "tiny-acoustic")):
        cfg = presets_of(StageConfig)[preset]
        save_stage(path / name, StageLM(cfg, rngs=nnx.Rngs(seed)),
                   meta={"note": "random tiny stage (musicrl.testing)"})
    k = presets_of(StageConfig)["tiny"].vocab
    tok = SemanticTokenizer("librosa", k)
    tok.centroids[...] = np.random.default_rng(seed).standard_normal(
        (k, tok.features.dim)).astype(np.float32)
    save_weights(path / "semantic", tok,
                 meta={"component": "semantic", "config": {"features": "librosa", "num_clusters": k},
                       "note": "random tiny semantic tokenizer (musicrl.testing)"})
    return path
