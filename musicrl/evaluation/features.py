"""A fixed, non-learned audio embedding, and a per-clip feature cache.

``handcrafted-v1`` (:data:`EMBEDDING_NAME`) summarizes a clip by the mean and
standard deviation over time of

* 64 log-mel bands (n_fft 1024, hop 256, 16 kHz, natural log of power + 1e-6),
* 20 MFCCs (from those log-mels) and the std of their first difference,
* 12 STFT chroma bins,
* spectral centroid, flatness, 85 % roll-off, zero-crossing rate, RMS and the
  onset-strength envelope,

giving ``DIM`` = 2·64 + 2·20 + 20 + 2·12 + 2·6 = 224 numbers. Nothing in it is
trained, so it cannot have been fitted to any generator's outputs (DESIGN §12
asks for that of the FAD embedding); it is the default embedding of
:mod:`musicrl.evaluation.fad` until MuLan exists, and the input of the
attribute classifier in :mod:`musicrl.evaluation.estimators`.

Extraction is NumPy/librosa on the CPU (≈ 50 ms per 10 s clip).
:func:`cached_features` keeps one ``.npz`` per cache name, keyed by clip id and
audio checksum, and resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from musicrl.audio import SAMPLE_RATE, load_audio
from musicrl.data.manifest import Clip

__all__ = ["EMBEDDING_NAME", "DIM", "handcrafted_features", "embed_handcrafted",
           "cached_features"]

EMBEDDING_NAME = "handcrafted-v1"
_N_FFT, _HOP, _MELS, _MFCC = 1024, 256, 64, 20
DIM = 2 * _MELS + 2 * _MFCC + _MFCC + 2 * 12 + 2 * 6


def handcrafted_features(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One clip [n] → its ``handcrafted-v1`` vector [DIM] (float32, not standardized)."""
    import librosa

    y = np.asarray(wav, np.float32)
    if y.size < _N_FFT:
        y = np.pad(y, (0, _N_FFT - y.size))
    spec = np.abs(librosa.stft(y, n_fft=_N_FFT, hop_length=_HOP)) ** 2        # [f, t]
    mel = librosa.feature.melspectrogram(S=spec, sr=sr, n_mels=_MELS)
    logmel = np.log(mel + 1e-6)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=_MFCC)
    chroma = librosa.feature.chroma_stft(S=spec, sr=sr)
    mag = np.sqrt(spec)
    frames = np.stack([
        librosa.feature.spectral_centroid(S=mag, sr=sr)[0] / (sr / 2),
        librosa.feature.spectral_flatness(S=mag)[0],
        librosa.feature.spectral_rolloff(S=mag, sr=sr)[0] / (sr / 2),
        librosa.feature.zero_crossing_rate(y, frame_length=_N_FFT, hop_length=_HOP)[0][
            : spec.shape[1]],
        np.log(librosa.feature.rms(S=mag, frame_length=_N_FFT)[0] + 1e-6),
        librosa.onset.onset_strength(S=logmel, sr=sr),
    ])

    def stats(a):
        return [a.mean(axis=1), a.std(axis=1)]

    parts = [*stats(logmel), *stats(mfcc), np.diff(mfcc, axis=1).std(axis=1),
             *stats(chroma), *stats(frames)]
    return np.concatenate(parts).astype(np.float32)


def embed_handcrafted(wavs: Sequence[np.ndarray] | np.ndarray,
                      sr: int = SAMPLE_RATE) -> np.ndarray:
    """``embed(wavs) -> [n, DIM]`` with the fixed ``handcrafted-v1`` features."""
    return np.stack([handcrafted_features(w, sr) for w in wavs]) if len(wavs) else \
        np.zeros((0, DIM), np.float32)


def cached_features(root: str | os.PathLike, clips: Sequence[Clip],
                    cache: str | os.PathLike,
                    fn: Callable[[np.ndarray], np.ndarray] = handcrafted_features,
                    progress: bool = False, save_every: int = 100) -> np.ndarray:
    """``fn(audio)`` of every clip, [n, ...], computed once and kept in ``cache`` (.npz).

    Rows are keyed by ``clip.id`` and ``clip.checksum`` (a re-rendered clip is
    recomputed). The file is rewritten atomically every ``save_every`` new
    clips, so an interrupted run resumes. Use a new cache name when ``fn``
    changes.
    """
    cache = Path(cache)
    have: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as z:
            have = {k: z[k] for k in z.files}
    key = [f"{c.id}|{c.checksum[:16]}" for c in clips]
    todo = [i for i, k in enumerate(key) if k not in have]

    def save():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.tmp.npz")
        np.savez(tmp, **have)
        os.replace(tmp, cache)

    it = todo
    if progress and todo:
        from tqdm import tqdm

        it = tqdm(todo, desc=f"features → {cache.name}", unit="clip")
    for n, i in enumerate(it, 1):
        have[key[i]] = np.asarray(fn(load_audio(Path(root) / clips[i].path)))
        if n % save_every == 0:
            save()
    if todo:
        save()
    return np.stack([have[k] for k in key]) if key else np.zeros((0,))
