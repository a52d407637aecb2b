"""Configuration of the neural audio codec (DESIGN §5.1)."""

from __future__ import annotations

import dataclasses

from musicrl.config import opt, register_presets

__all__ = ["CodecConfig"]


@dataclasses.dataclass(frozen=True)
class CodecConfig:
    """Model shape of the codec. Training options live in ``CodecTrainConfig``."""

    sample_rate: int = opt(16_000, "audio sample rate", choices=(16_000,))
    hop: int = opt(320, "samples per token frame (320 → 50 frames/s)", choices=(160, 320, 640))
    enc_n_fft: int = opt(640, "analysis STFT size of the encoder front end", min=64)
    dec_n_fft: int = opt(1280, "synthesis STFT size of the iSTFT head (a multiple of hop)", min=64)
    width: int = opt(256, "channels of the ConvNeXt stacks", min=8)
    mlp_ratio: int = opt(3, "ConvNeXt inverted-bottleneck ratio", min=1, max=8)
    enc_blocks: int = opt(4, "ConvNeXt blocks in the encoder", min=1, max=32)
    dec_blocks: int = opt(8, "ConvNeXt blocks in the decoder", min=1, max=32)
    kernel: int = opt(7, "depthwise kernel (frames)", min=1, max=31)
    code_dim: int = opt(128, "dimension of the quantized latent", min=2)
    num_levels: int = opt(8, "residual VQ levels", min=1, max=32)
    codebook_size: int = opt(1024, "codes per level", min=2, max=65536)
    ema_decay: float = opt(0.99, "EMA decay of the codebook statistics", min=0.0, max=1.0)
    dead_code_threshold: float = opt(
        0.1, "codes whose EMA usage falls below this fraction of the mean usage are restarted",
        min=0.0, max=1.0)
    decoder: str = opt("istft", "decoder head: Vocos-style iSTFT or transposed convolutions",
                       choices=("istft", "transposed"))

    def check(self) -> str | None:
        if self.dec_n_fft % self.hop:
            return f"dec_n_fft={self.dec_n_fft} must be a multiple of hop={self.hop}"
        return None

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop


register_presets(CodecConfig, {
    "tiny": CodecConfig(width=32, enc_blocks=1, dec_blocks=1, code_dim=16, num_levels=4,
                        codebook_size=64),
    "small": CodecConfig(),
    "base": CodecConfig(width=512, enc_blocks=8, dec_blocks=12, code_dim=256),
})
