"""Pitch-class and beat-period features for MuLan's audio tower.

The ConvNeXt stack over 64 log-mel bands sees ~1.4 s of context per frame and
cannot resolve semitones in the low octaves, so mean pooling leaves it blind to
two attributes that captions name: the *mode* (major/minor: which pitch classes
sound relative to the tonic) and the *tempo* (the beat period, often longer
than the receptive field). This module adds two small learned branches over
fixed, differentiable signal features computed in jnp:

* **Pitch classes.** A 2048-point STFT (7.8 Hz bins at 16 kHz) folded into 12
  chroma bins with librosa's chroma filterbank, max-normalized per frame and
  averaged over the crop → ``c ∈ R^12``. A shared MLP reads all 12 circular
  rotations of ``c`` and is max-pooled over them, so the branch is invariant to
  transposition by construction (the key is irrelevant to the mode) but is free
  to learn what distinguishes a major from a minor profile.
* **Beat period.** The onset envelope (half-wave rectified frame difference of
  the 50 Hz log-mel, averaged over bands, locally detrended) and its
  normalized autocorrelation at lags of 0.2–2 s (300–30 BPM) → an MLP. Peaks
  of the autocorrelation sit at the beat period and its multiples.

Neither branch uses labels or templates; both are trained only through the
contrastive loss, so the evaluation's estimators (chroma *templates* for the
mode, librosa's beat tracker for the tempo) stay independent of MuLan.

Dimension legend: ``b`` batch, ``t`` frames, ``f`` STFT bins, ``r`` rotations,
``l`` lags, ``d`` feature width.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.spectral import stft

__all__ = ["MusicFeatures", "chroma_profile", "onset_autocorrelation"]

CHROMA_N_FFT = 2048
MIN_LAG, MAX_LAG = 10, 100  # 50 Hz frames: 0.2 s (300 BPM) … 2 s (30 BPM)


@functools.lru_cache(maxsize=8)
def _chroma_np(sr: int, n_fft: int) -> np.ndarray:
    import librosa

    return librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=12).T.astype(np.float32)  # [f, 12]


def chroma_profile(wav_bn: jax.Array, sr: int, hop: int) -> jax.Array:
    """Mean max-normalized chroma of a crop [b, 12] (each row's max is 1)."""
    mag = jnp.abs(stft(wav_bn, CHROMA_N_FFT, hop))                         # [b, t, f]
    chroma = mag @ jnp.asarray(_chroma_np(sr, CHROMA_N_FFT))                  # [b, t, 12]
    chroma = chroma / jnp.maximum(jnp.max(chroma, -1, keepdims=True), 1e-6)
    prof = jnp.mean(chroma, axis=1)
    return prof / jnp.maximum(jnp.max(prof, -1, keepdims=True), 1e-6)


def onset_autocorrelation(log_mel_btm: jax.Array) -> jax.Array:
    """Normalized autocorrelation [b, MAX_LAG − MIN_LAG + 1] of the onset envelope."""
    flux = jnp.mean(jax.nn.relu(jnp.diff(log_mel_btm, axis=1)), axis=-1)     # [b, t]
    # detrend with a ~1 s moving average, so slow loudness changes do not dominate
    k = 51
    kernel = jnp.ones((k,), flux.dtype) / k
    padded = jnp.pad(flux, ((0, 0), (k // 2, k // 2)), mode="edge")
    trend = jax.vmap(lambda x: jnp.convolve(x, kernel, mode="valid"))(padded)
    o = flux - trend
    t = o.shape[1]
    n = int(2 ** np.ceil(np.log2(t + MAX_LAG + 1)))  # no circular wrap-around
    spec = jnp.fft.rfft(o, n=n, axis=1)
    ac = jnp.fft.irfft(spec * jnp.conj(spec), n=n, axis=1)[:, : MAX_LAG + 1]
    overlap = jnp.maximum(t - jnp.arange(MAX_LAG + 1), 1).astype(ac.dtype)
    ac = ac / overlap                                     # unbiased: every lag on one scale
    return ac[:, MIN_LAG:] / jnp.maximum(ac[:, :1], 1e-8)


class MusicFeatures(nnx.Module):
    """(waveform, its 50 Hz log-mel) → [b, 2·width] pitch-class + beat-period features."""

    def __init__(self, width: int, *, norm: bool = False, rngs: nnx.Rngs):
        self.width = width
        self.chroma_in = nnx.Linear(12, width, rngs=rngs)
        self.chroma_out = nnx.Linear(width, width, rngs=rngs)
        lags = MAX_LAG - MIN_LAG + 1
        self.tempo_norm = nnx.LayerNorm(lags, rngs=rngs)
        self.tempo_in = nnx.Linear(lags, width, rngs=rngs)
        self.tempo_out = nnx.Linear(width, width, rngs=rngs)
        # Optional LayerNorm of each branch's output: unnormalized, the pitch-class
        # branch varies ~6x less than the ConvNeXt pool and its mode signal is lost in
        # the projection (docs/mulan.md "Mode twins").
        self.pitch_out_norm = nnx.LayerNorm(width, rngs=rngs) if norm else None
        self.tempo_out_norm = nnx.LayerNorm(width, rngs=rngs) if norm else None

    def __call__(self, wav_bn: jax.Array, log_mel_btm: jax.Array, sr: int, hop: int
                 ) -> jax.Array:
        prof = chroma_profile(wav_bn, sr, hop)                                 # [b, 12]
        rolls = jnp.stack([jnp.roll(prof, -r, axis=-1) for r in range(12)], axis=1)  # [b, r, 12]
        h = self.chroma_out(jax.nn.gelu(self.chroma_in(rolls)))
        pitch = jnp.max(h, axis=1)                                              # [b, d]
        ac = onset_autocorrelation(log_mel_btm)
        tempo = self.tempo_out(jax.nn.gelu(self.tempo_in(self.tempo_norm(ac))))
        if self.pitch_out_norm is not None:
            pitch, tempo = self.pitch_out_norm(pitch), self.tempo_out_norm(tempo)
        return jnp.concatenate([pitch, tempo], axis=-1)
