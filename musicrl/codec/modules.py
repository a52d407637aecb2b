"""Building blocks of the codec: ConvNeXt stacks at frame rate, the STFT front end,
the Vocos-style iSTFT head, and a SoundStream-style transposed-convolution decoder.

Dimension legend: ``b`` batch, ``n`` samples, ``t`` frames (50/s), ``d`` width,
``f`` STFT bins, ``c`` channels of the waveform decoder.

Why frame-rate ConvNeXt + iSTFT (Vocos, Siuzdenko et al. 2023): all the work
happens at 50 frames/s instead of 16,000 samples/s, which is what a CPU can
afford; the head predicts log-magnitude and phase and an inverse STFT makes the
waveform. ``benchmarks/bench_codec.py`` measures it against the transposed-conv
decoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from musicrl.spectral import istft, stft

__all__ = ["ConvNeXtBlock", "ConvNeXtStack", "StftFrontEnd", "IstftHead", "TransposedDecoder"]


class ConvNeXtBlock(nnx.Module):
    """Depthwise temporal conv → LayerNorm → MLP (GELU) → layer scale, residual."""

    def __init__(self, d: int, mlp_ratio: int, kernel: int, *, rngs: nnx.Rngs):
        self.dw = nnx.Conv(d, d, kernel_size=(kernel,), feature_group_count=d, padding="SAME",
                           rngs=rngs)
        self.norm = nnx.LayerNorm(d, epsilon=1e-6, rngs=rngs)
        self.up = nnx.Linear(d, d * mlp_ratio, rngs=rngs)
        self.down = nnx.Linear(d * mlp_ratio, d, rngs=rngs)
        self.scale = nnx.Param(jnp.full((d,), 1e-2, jnp.float32))

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        h = self.dw(x_btd)
        h = self.down(jax.nn.gelu(self.up(self.norm(h))))
        return x_btd + self.scale[...] * h


class ConvNeXtStack(nnx.Module):
    """Input projection, ``n`` ConvNeXt blocks, final LayerNorm."""

    def __init__(self, d_in: int, d: int, n: int, mlp_ratio: int, kernel: int, *,
                 in_kernel: int | None = None, rngs: nnx.Rngs):
        self.inp = nnx.Conv(d_in, d, kernel_size=(in_kernel or kernel,), padding="SAME",
                            rngs=rngs)
        self.norm_in = nnx.LayerNorm(d, epsilon=1e-6, rngs=rngs)
        self.blocks = nnx.List([ConvNeXtBlock(d, mlp_ratio, kernel, rngs=rngs) for _ in range(n)])
        self.norm_out = nnx.LayerNorm(d, epsilon=1e-6, rngs=rngs)

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        h = self.norm_in(self.inp(x_btd))
        for blk in self.blocks:
            h = blk(h)
        return self.norm_out(h)


class StftFrontEnd(nnx.Module):
    """Waveform → per-frame features: power-law-compressed complex STFT + log magnitude.

    The compressed complex spectrum |X|^0.3·e^{iφ} keeps the phase (which the
    encoder needs for a waveform-faithful code) at a tame dynamic range.
    """

    def __init__(self, n_fft: int, hop: int):
        self.n_fft, self.hop = n_fft, hop

    @property
    def features(self) -> int:
        return 3 * (self.n_fft // 2 + 1)

    def __call__(self, wav_bn: jax.Array) -> jax.Array:
        n = wav_bn.shape[-1]
        spec = stft(wav_bn, self.n_fft, self.hop)[:, : n // self.hop]  # [b, t, f]
        mag = jnp.abs(spec)
        comp = spec * (mag + 1e-7) ** (0.3 - 1.0)
        return jnp.concatenate([comp.real, comp.imag, jnp.log(mag + 1e-5)], axis=-1)


class IstftHead(nnx.Module):
    """Frame features → log-magnitude and phase → inverse STFT (Vocos)."""

    def __init__(self, d: int, n_fft: int, hop: int, *, rngs: nnx.Rngs):
        self.n_fft, self.hop = n_fft, hop
        self.proj = nnx.Linear(d, 2 * (n_fft // 2 + 1), rngs=rngs)

    def __call__(self, h_btd: jax.Array) -> jax.Array:
        out = self.proj(h_btd)
        logmag, phase = jnp.split(out, 2, axis=-1)
        mag = jnp.exp(jnp.clip(logmag, max=10.0))  # clip: avoid overflow early in training
        spec = mag * (jnp.cos(phase) + 1j * jnp.sin(phase))
        t = h_btd.shape[1]
        return istft(spec, self.n_fft, self.hop, length=t * self.hop)


class _ResUnit(nnx.Module):
    def __init__(self, c: int, dilation: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(c, c, kernel_size=(7,), kernel_dilation=(dilation,), padding="SAME",
                              rngs=rngs)
        self.conv2 = nnx.Conv(c, c, kernel_size=(1,), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.conv2(jax.nn.elu(self.conv1(jax.nn.elu(x))))


class TransposedDecoder(nnx.Module):
    """SoundStream decoder: transposed-conv upsampling (8·5·4·2 = 320) with residual units."""

    def __init__(self, d: int, *, strides: tuple[int, ...] = (8, 5, 4, 2), channels: int = 256,
                 rngs: nnx.Rngs):
        self.inp = nnx.Conv(d, channels, kernel_size=(7,), padding="SAME", rngs=rngs)
        ups, units = [], []
        c = channels
        for s in strides:
            ups.append(nnx.ConvTranspose(c, c // 2, kernel_size=(2 * s,), strides=(s,),
                                         padding="SAME", rngs=rngs))
            c //= 2
            units.append(nnx.List([_ResUnit(c, dil, rngs=rngs) for dil in (1, 3, 9)]))
        self.ups = nnx.List(ups)
        self.units = nnx.List(units)
        self.out = nnx.Conv(c, 1, kernel_size=(7,), padding="SAME", rngs=rngs)

    def __call__(self, h_btd: jax.Array) -> jax.Array:
        x = self.inp(h_btd)
        for up, units in zip(self.ups, self.units, strict=True):
            x = up(jax.nn.elu(x))
            for u in units:
                x = u(x)
        return jnp.tanh(self.out(jax.nn.elu(x)))[..., 0]
