"""``musicrl codec encode|decode``: audio files ↔ token files for users.

A token file is an ``.npz`` (no pickles) with ``codes`` int16 [t, q] and the
codec facts needed to check it against a decoder: ``sample_rate``,
``frame_rate``, ``num_levels``, ``codebook_size``, ``samples``.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from musicrl.atomic import write_bytes_atomic
from musicrl.audio import SAMPLE_RATE, AudioError, load_audio
from musicrl.errors import MusicrlError

__all__ = ["TokenFileError", "EncodeResult", "encode_file", "decode_file", "read_tokens"]


class TokenFileError(MusicrlError, ValueError):
    """A token file is unreadable or does not fit this codec."""


@dataclasses.dataclass
class EncodeResult:
    codes: np.ndarray           # [t, q]
    notes: list[str]            # what was done to the input (resampled, downmixed …)


def encode_file(codec, path: str | os.PathLike, out: str | os.PathLike,
                num_levels: int | None = None, batch_seconds: float = 30.0) -> EncodeResult:
    """Encodes any readable audio file (any rate, any channels) to a token file."""
    import jax.numpy as jnp
    import soundfile as sf

    path = Path(path)
    notes = []
    try:
        info = sf.info(str(path))
        if info.samplerate != codec.sample_rate:
            notes.append(f"resampled {info.samplerate} Hz → {codec.sample_rate} Hz")
        if info.channels > 1:
            notes.append(f"downmixed {info.channels} channels → mono")
    except Exception:
        pass  # load_audio below gives the user-facing error
    wav = load_audio(path, codec.sample_rate)
    q = num_levels or codec.num_levels
    if not 1 <= q <= codec.num_levels:
        raise TokenFileError(f"--levels {q}: this codec has 1..{codec.num_levels} levels")
    hop = codec.hop
    n = wav.shape[0]
    if n < hop:
        raise AudioError(f"{path}: shorter than one codec frame ({hop} samples)")
    pad = (-n) % hop
    if pad:
        notes.append(f"padded {pad} samples to a whole frame")
    wav = np.pad(wav, (0, pad))
    chunk = max(hop, int(batch_seconds * codec.sample_rate) // hop * hop)
    codes = []
    for s in range(0, wav.shape[0], chunk):  # bounded memory for long files
        codes.append(np.asarray(codec.encode(jnp.asarray(wav[None, s:s + chunk]), q))[0])
    codes = np.concatenate(codes).astype(np.int16)
    _write_npz_atomic(Path(out), codes=codes, sample_rate=codec.sample_rate,
                      frame_rate=codec.frame_rate, num_levels=q,
                      codebook_size=codec.codebook_size, samples=n)
    return EncodeResult(codes, notes)


def read_tokens(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise TokenFileError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:
        raise TokenFileError(f"{path}: not a token file ({type(e).__name__}: {e}); make one "
                             f"with `musicrl codec encode`") from None
    missing = {"codes", "sample_rate", "codebook_size"} - set(data)
    if missing:
        raise TokenFileError(f"{path}: not a token file (missing {sorted(missing)})")
    if data["codes"].ndim != 2:
        raise TokenFileError(f"{path}: codes must be [frames, levels], got {data['codes'].shape}")
    return data


def decode_file(codec, path: str | os.PathLike, out: str | os.PathLike) -> float:
    """Decodes a token file to a 16-bit WAV; returns its duration in seconds."""
    import jax.numpy as jnp

    from musicrl.audio import write_wav_atomic

    data = read_tokens(path)
    codes = data["codes"].astype(np.int32)
    if int(data["codebook_size"]) != codec.codebook_size or int(data["sample_rate"]) != codec.sample_rate:
        raise TokenFileError(
            f"{path}: made by a codec with {int(data['codebook_size'])} codes at "
            f"{int(data['sample_rate'])} Hz; this codec has {codec.codebook_size} at "
            f"{codec.sample_rate} Hz — decode with the codec that encoded it")
    if codes.shape[1] > codec.num_levels:
        raise TokenFileError(f"{path}: {codes.shape[1]} levels, this codec has {codec.num_levels}")
    if codes.size and (codes.min() < 0 or codes.max() >= codec.codebook_size):
        raise TokenFileError(f"{path}: codes outside 0..{codec.codebook_size - 1}")
    wav = np.asarray(codec.decode(jnp.asarray(codes[None])))[0]
    n = int(data.get("samples", wav.shape[0]))
    wav = wav[:n]
    write_wav_atomic(out, wav, SAMPLE_RATE)
    return wav.shape[0] / SAMPLE_RATE


def _write_npz_atomic(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    write_bytes_atomic(path, buf.getvalue())
