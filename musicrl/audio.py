"""Audio I/O, resampling and loudness normalization (NumPy side).

The whole system works at one sample rate (16 kHz mono, float32 in [-1, 1]).
Anything that reads audio from outside goes through :func:`load_audio`, which
resamples and downmixes, and raises :class:`AudioError` with the file name and
the reason when it cannot.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from musicrl.atomic import atomic_path
from musicrl.errors import MusicrlError

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "load_audio",
    "decode_audio_bytes",
    "resample",
    "to_mono",
    "loudness_normalize",
    "write_wav_atomic",
    "rms_dbfs",
]

SAMPLE_RATE = 16_000
SUPPORTED_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class AudioError(MusicrlError, ValueError):
    """An audio file could not be used; the message says which and why."""


def to_mono(x: np.ndarray) -> np.ndarray:
    """[t] or [t, c] → [t] by averaging channels."""
    if x.ndim == 1:
        return x
    return x.mean(axis=1)


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, via librosa) of a mono signal."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(x.astype(np.float32), orig_sr=sr_in, target_sr=sr_out,
                            res_type="soxr_hq").astype(np.float32)


def decode_audio_bytes(data: bytes, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decodes WAV/FLAC/OGG bytes to mono float32 at ``sr``."""
    import soundfile as sf

    x, sr_in = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return resample(to_mono(x), sr_in, sr)


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Reads any supported file to mono float32 at ``sr``.

    Raises:
      AudioError: unreadable, empty, or not audio (the message names the file).
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        x, sr_in = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises a generic error; say what it said
        if path.suffix.lower() == ".mp3":
            try:
                import librosa

                y, sr_in = librosa.load(str(path), sr=None, mono=True)
                x = y[:, None]
            except Exception as e2:
                raise AudioError(f"{path}: cannot decode as audio ({e2})") from e2
        else:
            raise AudioError(f"{path}: cannot decode as audio ({e})") from e
    if x.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return resample(to_mono(x), sr_in, sr)


def rms_dbfs(x: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for silence)."""
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20.0 * np.log10(r) if r > 0 else float("-inf")


def loudness_normalize(x: np.ndarray, sr: int, target_lufs: float = -20.0,
                       peak: float = 0.98) -> tuple[np.ndarray, float]:
    """Scales to an integrated loudness (ITU-R BS.1770, pyloudnorm), peak-limited.

    Returns:
      (normalized audio, measured loudness of the input in LUFS). Audio too short
      or too quiet to measure is scaled by RMS instead.
    """
    import pyloudnorm

    x = x.astype(np.float64)
    meter = pyloudnorm.Meter(sr)
    try:
        lufs = float(meter.integrated_loudness(x))
    except ValueError:  # shorter than one gating block
        lufs = float("-inf")
    if np.isfinite(lufs):
        gain = 10 ** ((target_lufs - lufs) / 20)
    else:
        level = rms_dbfs(x)
        gain = 10 ** ((target_lufs - level) / 20) if np.isfinite(level) else 1.0
    y = x * gain
    m = np.max(np.abs(y)) if y.size else 0.0
    if m > peak:
        y *= peak / m
    return y.astype(np.float32), lufs


def write_wav_atomic(path: str | os.PathLike, x: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Writes 16-bit PCM WAV via a temporary file and an atomic rename.

    A crash mid-write leaves either the old file or no file, never a truncated one.
    """
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(x, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")


def map_padded(fn, wav_bn: np.ndarray, batch: int = 32) -> np.ndarray:
    """``fn`` over clips [N, n] in chunks of ``batch`` rows, the last chunk zero-padded so a
    jitted ``fn`` compiles one shape; returns the rows' outputs concatenated [N, ...]."""
    wav_bn = np.asarray(wav_bn, np.float32)
    out = []
    for i in range(0, len(wav_bn), batch):
        x = wav_bn[i:i + batch]
        pad = min(batch, len(wav_bn)) - len(x)
        if pad:
            x = np.concatenate([x, np.zeros((pad, x.shape[1]), np.float32)])
        out.append(np.asarray(fn(x))[: len(x) - pad])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)
