"""The neural audio codec: encoder → residual VQ → decoder, and its contract.

The rest of the system depends only on::

    codec.encode(wav[b, n]) -> codes[b, t, q]     int32, t = n // hop
    codec.decode(codes[b, t, q]) -> wav[b, t * hop]
    codec.sample_rate, codec.frame_rate, codec.num_levels, codec.codebook_size

``q`` may be any number of levels from 1 to ``num_levels`` (quantizer dropout
trains every prefix). Dimension legend: ``b`` batch, ``n`` samples, ``t``
frames, ``d`` width, ``e`` code dimension, ``q`` levels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from musicrl.codec.config import CodecConfig
from musicrl.codec.modules import ConvNeXtStack, IstftHead, StftFrontEnd, TransposedDecoder
from musicrl.codec.quantizer import ResidualVQ

__all__ = ["Codec"]


class Codec(nnx.Module):
    def __init__(self, cfg: CodecConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.front = StftFrontEnd(cfg.enc_n_fft, cfg.hop)
        # The front end has ~1,000 features per frame: a short input kernel keeps it cheap.
        self.encoder = ConvNeXtStack(self.front.features, cfg.width, cfg.enc_blocks,
                                     cfg.mlp_ratio, cfg.kernel, in_kernel=3, rngs=rngs)
        self.to_code = nnx.Linear(cfg.width, cfg.code_dim, rngs=rngs)
        # Latents are normalized (no affine) before quantization: their offset and scale
        # cannot drift away from the EMA codebooks, which would collapse a level to one code.
        self.code_norm = nnx.LayerNorm(cfg.code_dim, use_scale=False, use_bias=False, rngs=rngs)
        self.rvq = ResidualVQ(cfg.code_dim, cfg.num_levels, cfg.codebook_size,
                              decay=cfg.ema_decay, dead_threshold=cfg.dead_code_threshold,
                              rngs=rngs)
        self.from_code = nnx.Linear(cfg.code_dim, cfg.width, rngs=rngs)
        if cfg.decoder == "istft":
            self.backbone = ConvNeXtStack(cfg.width, cfg.width, cfg.dec_blocks, cfg.mlp_ratio,
                                          cfg.kernel, rngs=rngs)
            self.head = IstftHead(cfg.width, cfg.dec_n_fft, cfg.hop, rngs=rngs)
        else:
            self.backbone = ConvNeXtStack(cfg.width, cfg.width, max(1, cfg.dec_blocks // 4),
                                          cfg.mlp_ratio, cfg.kernel, rngs=rngs)
            self.head = TransposedDecoder(cfg.width, rngs=rngs)

    # ---------------------------------------------------------------- contract

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def hop(self) -> int:
        return self.cfg.hop

    @property
    def num_levels(self) -> int:
        return self.cfg.num_levels

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    def latents(self, wav_bn: jax.Array) -> jax.Array:
        """Continuous encoder output [b, t, e] (before quantization)."""
        n = (wav_bn.shape[-1] // self.hop) * self.hop
        return self.code_norm(self.to_code(self.encoder(self.front(wav_bn[:, :n]))))

    def encode(self, wav_bn: jax.Array, num_levels: int | None = None) -> jax.Array:
        """Waveform [b, n] at ``sample_rate`` → codes [b, n // hop, q] (int32)."""
        return self.rvq.encode(self.latents(wav_bn), num_levels)

    def decode(self, codes_btq: jax.Array) -> jax.Array:
        """Codes [b, t, q] (1 ≤ q ≤ num_levels) → waveform [b, t * hop]."""
        return self.synthesize(self.rvq.decode(codes_btq))

    def synthesize(self, z_bte: jax.Array) -> jax.Array:
        """Quantized latents [b, t, e] → waveform [b, t * hop]."""
        return self.head(self.backbone(self.from_code(z_bte)))

    # ---------------------------------------------------------------- training

    def __call__(self, wav_bn: jax.Array, n_q_b: jax.Array | None = None, train: bool = False
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Reconstruction with the first ``n_q_b[i]`` levels; returns (wav, VQ metrics)."""
        z = self.latents(wav_bn)
        zq, _, metrics = self.rvq(z, n_q_b, train=train)
        return self.synthesize(zq), metrics


def count_params(model: nnx.Module) -> int:
    return sum(int(jnp.size(x)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
