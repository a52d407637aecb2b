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
from musicrl.mulan.features import MusicFeatures
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
        # Optional pitch-class and beat-period branches (musicrl.mulan.features).
        self.music = (MusicFeatures(cfg.music_width, norm=cfg.music_norm, rngs=rngs)
                      if cfg.music_features else None)

    @property
    def out_dim(self) -> int:
        """Width of the pooled feature :meth:`__call__` returns."""
        return self.cfg.audio_width + (2 * self.cfg.music_width if self.cfg.music_features
                                       else 0)

    def _mel(self, wav_bn: jax.Array) -> jax.Array:
        cfg = self.cfg
        t = self.num_frames(wav_bn.shape[-1])
        mel = log_mel(wav_bn, cfg.sample_rate, cfg.mel_n_fft, cfg.hop, cfg.n_mels)
        return mel[:, : t * cfg.patch_frames]

    def num_frames(self, n: int) -> int:
        """Tower frames for ``n`` samples: ``n // (hop · patch_frames)``."""
        return n // (self.cfg.hop * self.cfg.patch_frames)

    def frames(self, wav_bn: jax.Array) -> jax.Array:
        """Waveform [b, n] → per-frame features [b, t, d] at ``cfg.frame_rate`` Hz."""
        return self._frames(self._mel(wav_bn))

    def _frames(self, mel: jax.Array) -> jax.Array:
        mel = (mel + _MEL_SHIFT) / _MEL_SCALE
        patches = rearrange(mel, "b (t p) m -> b t (p m)", p=self.cfg.patch_frames)
        return self.stack(patches)

    def __call__(self, wav_bn: jax.Array) -> jax.Array:
        """Waveform [b, n] → pooled feature [b, out_dim]: the mean over frames, then (if
        enabled) the pitch-class and beat-period features."""
        mel = self._mel(wav_bn)
        pooled = jnp.mean(self._frames(mel), axis=1)
        if self.music is None:
            return pooled
        music = self.music(wav_bn, mel, self.cfg.sample_rate, self.cfg.hop)
        return jnp.concatenate([pooled, music], axis=-1)
