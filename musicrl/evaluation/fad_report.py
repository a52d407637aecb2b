"""``musicrl eval fad``: FAD between audio sets, and the FAD sanity table.

Embedding: ``handcrafted-v1`` (:mod:`musicrl.evaluation.features`), fixed
features that no model of this project is trained on, so the generator cannot
learn to game it; standardized with the reference set's statistics. Protocol:
n clips per side drawn without replacement, once per seed (``fad_fixed``).

The sanity table checks that FAD orders things the way ears do::

    FAD(valid vs test) < FAD(test vs codec 2 levels) < FAD(test vs codec 1 level)
                       < FAD(test vs noise)

for every seed of the draw. "Noise" is pink noise at the corpus loudness
(a harder negative than silence: its spectrum slopes like music's).

A set is a corpus split (``test``, ``valid``…) or a folder of audio files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.atomic import write_text_atomic
from musicrl.evaluation.fad import fad_fixed, standardize
from musicrl.evaluation.features import (
    EMBEDDING_NAME,
    cached_features,
    embed_handcrafted,
)

__all__ = ["load_set", "fad_between", "fad_sanity", "pink_noise", "format_sanity",
           "write_sanity"]

SPLITS = ("train", "valid", "test")
AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3")


def _folder_wavs(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXT)
    if not files:
        raise ValueError(f"{folder}: no audio files ({', '.join(AUDIO_EXT)}) found")
    return files


def load_set(spec: str, root: str | os.PathLike, cache_dir: str | os.PathLike,
             progress: bool = False) -> tuple[np.ndarray, str]:
    """Embeddings [n, d] of a set named by ``spec`` (a split name or an audio folder)."""
    from musicrl.audio import load_audio
    from musicrl.data.manifest import load_clips

    if spec in SPLITS:
        clips = load_clips(root, splits=[spec])
        if not clips:
            raise ValueError(f"split {spec!r} of {root} has no clips")
        return cached_features(root, clips, Path(cache_dir) / f"{EMBEDDING_NAME}-{spec}.npz",
                               progress=progress), f"{root}:{spec} ({len(clips)} clips)"
    folder = Path(spec)
    if not folder.is_dir():
        raise ValueError(f"{spec!r} is neither a split ({', '.join(SPLITS)}) nor a folder")
    files = _folder_wavs(folder)
    wavs = [load_audio(f) for f in files]
    return embed_handcrafted(wavs), f"{folder} ({len(files)} files)"


def fad_between(ref: np.ndarray, ev: np.ndarray, n: int | None = None,
                seeds: int = 3) -> dict[str, Any]:
    """FAD of two embedding sets (standardized by ``ref``), n per side, one draw per seed."""
    n = n or min(len(ref), len(ev))
    r = fad_fixed(standardize(ref, ref), standardize(ev, ref), n, repeats=seeds)
    return {"mean": r.mean, "std": r.std, "values": list(r.values), "n": n, "seeds": seeds}


def pink_noise(n_clips: int, samples: int, seed: int = 0, rms_db: float = -23.0) -> np.ndarray:
    """Pink (1/f power) noise clips [n, samples] at a fixed RMS level."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal((n_clips, samples)), axis=-1)
    f = np.arange(spec.shape[-1], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n=samples, axis=-1)
    x /= np.sqrt(np.mean(x ** 2, axis=-1, keepdims=True)) + 1e-12
    return (x * 10 ** (rms_db / 20)).astype(np.float32)


def _codec_set(codec, root, clips, levels: int, cache: Path, progress: bool) -> np.ndarray:
    """handcrafted-v1 of every clip after codec encode → decode with ``levels`` levels."""
    import jax.numpy as jnp

    from musicrl.evaluation.codec import _decode, _encode
    from musicrl.evaluation.features import handcrafted_features

    def fn(wav: np.ndarray) -> np.ndarray:
        n = len(wav) // codec.hop * codec.hop
        codes = _encode(codec, jnp.asarray(wav[None, :n]))[..., :levels]
        return handcrafted_features(np.asarray(_decode(codec, codes))[0])

    return cached_features(root, clips, cache, fn=fn, progress=progress)


def fad_sanity(root: str | os.PathLike, codec_dir: str | os.PathLike,
               cache_dir: str | os.PathLike, *, n: int = 200, seeds: int = 3,
               progress: bool = True) -> dict[str, Any]:
    """The four-row sanity table (see the module doc), each row n clips × ``seeds`` draws."""
    from musicrl.codec import load_codec
    from musicrl.data.manifest import load_clips

    cache_dir = Path(cache_dir)
    test = load_clips(root, splits=["test"])
    valid = load_clips(root, splits=["valid"])
    if min(len(test), len(valid)) < n:
        raise ValueError(f"n={n} but the splits have {len(valid)} valid / {len(test)} test "
                         "clips: lower --n")
    emb_test = cached_features(root, test, cache_dir / f"{EMBEDDING_NAME}-test.npz",
                               progress=progress)
    emb_valid = cached_features(root, valid, cache_dir / f"{EMBEDDING_NAME}-valid.npz",
                                progress=progress)
    codec, _ = load_codec(codec_dir)
    tag = hashlib.sha256(Path(codec_dir).resolve().as_posix().encode()).hexdigest()[:8]
    rows = [("valid vs test (real audio)", emb_valid)]
    for q in (2, 1):
        emb = _codec_set(codec, root, test, q, cache_dir / f"codec{tag}-q{q}-test.npz", progress)
        rows.append((f"test vs codec, {q} level{'s' if q > 1 else ''}", emb))
    samples = int(round(test[0].duration * 16_000))
    rows.append(("test vs pink noise", embed_handcrafted(pink_noise(len(test), samples))))
    table = [{"row": name, **fad_between(emb_test, emb, n, seeds)} for name, emb in rows]
    per_seed = np.array([r["values"] for r in table])  # [rows, seeds]
    ordered = bool(np.all(np.diff(per_seed, axis=0) > 0))
    return {"embedding": EMBEDDING_NAME, "protocol": f"fixed n={n}, {seeds} draws",
            "codec": str(codec_dir), "rows": table,
            "ordered_every_seed": ordered}


def format_sanity(rep: dict[str, Any]) -> str:
    lines = [f"FAD sanity ({rep['embedding']} embedding, {rep['protocol']})",
             "| comparison | FAD mean ± std | per seed |", "|---|---|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['row']} | {r['mean']:.3f} ± {r['std']:.3f} | "
                     + ", ".join(f"{v:.3f}" for v in r["values"]) + " |")
    lines.append(f"\nordered valid < codec q2 < codec q1 < noise for every seed: "
                 f"{rep['ordered_every_seed']}")
    return "\n".join(lines)


def write_sanity(rep: dict[str, Any], out: str | os.PathLike) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "fad_sanity.json", json.dumps(rep, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["row"] for r in rep["rows"]]
    ax.barh(names, [r["mean"] for r in rep["rows"]], xerr=[r["std"] for r in rep["rows"]],
            color="C0")
    for i, r in enumerate(rep["rows"]):
        ax.plot(r["values"], [i] * len(r["values"]), "k.", ms=4)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel(f"FAD ({rep['embedding']}, log scale)")
    ax.set_title("FAD sanity: real < codec q2 < codec q1 < noise")
    fig.tight_layout()
    fig.savefig(out / "fad_sanity.png", dpi=110)
    plt.close(fig)
    return out


def fad_sets(ref: str, ev: Sequence[str], root, cache_dir, n: int | None, seeds: int,
             progress: bool = True) -> dict[str, Any]:
    """FAD of each set in ``ev`` against ``ref`` (for ``musicrl eval fad --ref … --eval …``)."""
    emb_ref, ref_name = load_set(ref, root, cache_dir, progress)
    rows = []
    for spec in ev:
        emb, name = load_set(spec, root, cache_dir, progress)
        rows.append({"row": f"{ref_name} vs {name}", **fad_between(emb_ref, emb, n, seeds)})
    return {"embedding": EMBEDDING_NAME, "protocol": f"fixed n, {seeds} draws", "rows": rows}
