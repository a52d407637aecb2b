"""STFT, inverse STFT and mel features in jnp (differentiable, jit-friendly).

Dimension legend: ``b`` batch, ``n`` samples, ``t`` frames, ``f`` frequency bins,
``m`` mel bands.

The STFT is centred (the signal is reflect-padded by ``n_fft // 2``) with a
periodic Hann window, as librosa does, so frame ``i`` is centred on sample
``i * hop``. :func:`istft` inverts it by windowed overlap-add, normalized by
the summed squared window, which is exact wherever frames overlap.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

__all__ = ["hann", "stft", "istft", "mel_filterbank", "log_mel"]


@functools.lru_cache(maxsize=32)
def _hann_np(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def hann(n: int) -> jnp.ndarray:
    """Periodic Hann window of length n."""
    return jnp.asarray(_hann_np(n))


def _frame(x_bn: jnp.ndarray, n_fft: int, hop: int) -> jnp.ndarray:
    """[b, n] → [b, t, n_fft] with t = 1 + (n - n_fft) // hop (no padding)."""
    t = 1 + (x_bn.shape[-1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(t)[:, None]
    return x_bn[..., idx]


def stft(x_bn: jnp.ndarray, n_fft: int, hop: int) -> jnp.ndarray:
    """Complex STFT [b, t, f] with t = n // hop + 1 and f = n_fft // 2 + 1."""
    pad = n_fft // 2
    x = jnp.pad(x_bn, ((0, 0), (pad, pad)), mode="reflect")
    frames = _frame(x, n_fft, hop) * hann(n_fft)
    return jnp.fft.rfft(frames, axis=-1)


def istft(spec_btf: jnp.ndarray, n_fft: int, hop: int, length: int) -> jnp.ndarray:
    """Inverse of :func:`stft` by overlap-add → [b, length].

    Requires ``n_fft`` to be a multiple of ``hop`` (the overlap-add is then a sum
    of ``n_fft // hop`` shifted, reshaped frame sequences: no scatter).
    """
    if n_fft % hop:
        raise ValueError(f"istft needs n_fft ({n_fft}) to be a multiple of hop ({hop})")
    b, t, _ = spec_btf.shape
    win = hann(n_fft)
    frames = jnp.fft.irfft(spec_btf, n=n_fft, axis=-1) * win  # [b, t, n_fft]
    r = n_fft // hop
    chunks = frames.reshape(b, t, r, hop)
    total = (t + r - 1) * hop
    out = jnp.zeros((b, t + r - 1, hop), frames.dtype)
    for k in range(r):  # r is static and small (e.g. 4)
        out = out.at[:, k:k + t].add(chunks[:, :, k])
    out = out.reshape(b, total)
    # Window envelope: the same overlap-add of win².
    env = np.zeros((t + r - 1, hop), np.float32)
    w2 = _hann_np(n_fft) ** 2
    for k in range(r):
        env[k:k + t] += w2.reshape(r, hop)[k]
    env = env.reshape(total)
    pad = n_fft // 2
    out = out[:, pad:pad + length]
    env = jnp.asarray(np.maximum(env[pad:pad + length], 1e-8))
    if out.shape[1] < length:
        out = jnp.pad(out, ((0, 0), (0, length - out.shape[1])))
        env = jnp.pad(env, (0, length - env.shape[0]), constant_values=1.0)
    return out / env


@functools.lru_cache(maxsize=32)
def _mel_np(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                               fmax=fmax).T.astype(np.float32)  # [f, m]


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> jnp.ndarray:
    """Slaney mel filterbank [f, m] (librosa's)."""
    return jnp.asarray(_mel_np(sr, n_fft, n_mels, fmin, fmax))


def log_mel(x_bn: jnp.ndarray, sr: int = 16_000, n_fft: int = 1024, hop: int = 256,
            n_mels: int = 80, eps: float = 1e-5) -> jnp.ndarray:
    """Natural-log mel magnitude spectrogram [b, t, m]."""
    mag = jnp.abs(stft(x_bn, n_fft, hop))
    return jnp.log(mag @ mel_filterbank(sr, n_fft, n_mels) + eps)
