"""MuLan's audio tower: log-mel patches → ConvNeXt stack at 25 Hz → mean pool.

Dimension legend: ``b`` batch, ``n`` samples (16 kHz), ``t`` 25 Hz tower frames,
``m`` mel bands, ``d`` width.

The front end is the jnp log-mel of :mod:`musicrl.spectral` at 50 frames/s
(hop 320); ``patch_frames`` consecutive frames are stacked into one patch, so
with the default 2 the tower runs at 25 Hz. :meth:`AudioTower.frames` exposes
those per-frame features: frame ``i`` covers ``[i, i + 1) / 25`` s, the grid of
the semantic tokens (DESIGN §5.2), so a future feature extractor can reuse them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from musicrl.codec.modules import ConvNeXtStack
from musicrl.mulan.config import MulanConfig
from musicrl.spectral import log_mel

__all__ = ["AudioTower"]

# log-mel of music at 16 kHz spans roughly [-11, 3]: centre and scale it near unit range.
_MEL_SHIFT, _MEL_SCALE = 4.0, 4.0


class AudioTower(nnx.Module):
    def __init__(self, cfg: MulanConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.stack = ConvNeXtStack(cfg.n_mels * cfg.patch_frames, cfg.audio_width,
                                   cfg.audio_depth, cfg.mlp_ratio, cfg.audio_kernel,
                                   in_kernel=3, rngs=rngs)

    def num_frames(self, n: int) -> int:
        """Tower frames for ``n`` samples: ``n // (hop · patch_frames)``."""
        return n // (self.cfg.hop * self.cfg.patch_frames)

    def frames(self, wav_bn: jax.Array) -> jax.Array:
        """Waveform [b, n] → per-frame features [b, t, d] at ``cfg.frame_rate`` Hz."""
        cfg = self.cfg
        t = self.num_frames(wav_bn.shape[-1])
        mel = log_mel(wav_bn, cfg.sample_rate, cfg.mel_n_fft, cfg.hop, cfg.n_mels)
        mel = (mel[:, : t * cfg.patch_frames] + _MEL_SHIFT) / _MEL_SCALE
        patches = rearrange(mel, "b (t p) m -> b t (p m)", p=cfg.patch_frames)
        return self.stack(patches)

    def __call__(self, wav_bn: jax.Array) -> jax.Array:
        """Waveform [b, n] → pooled feature [b, d] (mean over frames)."""
        return jnp.mean(self.frames(wav_bn), axis=1)
