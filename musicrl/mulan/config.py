"""Configuration of MuLan, the joint text–audio embedding (DESIGN §6.1)."""

from __future__ import annotations

import dataclasses

from musicrl.config import opt, register_presets

__all__ = ["MulanConfig"]


@dataclasses.dataclass(frozen=True)
class MulanConfig:
    """Model shape of MuLan. Training options live in ``MulanTrainConfig``."""

    sample_rate: int = opt(16_000, "audio sample rate", choices=(16_000,))
    embed_dim: int = opt(128, "dimension of the shared unit sphere", min=2)
    crop_seconds: float = opt(4.0, "seconds of audio per embedding (training crop)",
                              min=0.2, max=30.0)
    # audio tower
    n_mels: int = opt(64, "log-mel bands of the audio front end", min=8, max=256)
    mel_n_fft: int = opt(1024, "STFT size of the log-mel front end", min=64)
    patch_frames: int = opt(2, "50 Hz mel frames per patch (2 → 25 Hz tower frames)",
                            choices=(1, 2, 4))
    audio_width: int = opt(256, "channels of the audio ConvNeXt stack", min=8)
    audio_depth: int = opt(6, "ConvNeXt blocks of the audio tower", min=1, max=32)
    audio_kernel: int = opt(7, "depthwise kernel of the audio tower (frames)", min=1, max=31)
    mlp_ratio: int = opt(3, "inverted-bottleneck ratio of both towers", min=1, max=8)
    music_features: bool = opt(False, "add the pitch-class (chroma) and beat-period (onset "
                                      "autocorrelation) branches to the audio tower")
    music_width: int = opt(64, "width of each music-feature branch", min=4)
    music_norm: bool = opt(False, "layer-normalize each music-feature branch's output, so "
                                  "that it enters the projection at the scale of the "
                                  "ConvNeXt pool (docs/mulan.md \"Normalized branches\")")
    # text tower
    vocab_size: int = opt(2048, "subword vocabulary (byte-level BPE: at least 300)",
                          min=300, max=65_536)
    max_text_len: int = opt(64, "tokens per caption (longer ones are cut)", min=4, max=1024)
    text_width: int = opt(256, "width of the text transformer", min=8)
    text_depth: int = opt(4, "pre-norm transformer blocks of the text tower", min=1, max=32)
    text_heads: int = opt(4, "attention heads of the text tower", min=1, max=64)
    numeric_features: bool = opt(False, "add to each number token ('97', ' 120') a learned "
                                        "projection of Fourier features of its log value, so "
                                        "that nearby numbers (BPMs) get nearby embeddings")
    # conditioning tokens (MusicLM §3.1)
    rvq_levels: int = opt(12, "residual VQ levels over the embedding (conditioning tokens)",
                          min=1, max=32)
    rvq_codebook_size: int = opt(1024, "codes per conditioning RVQ level", min=2, max=65_536)
    rvq_decay: float = opt(0.99, "EMA decay of the conditioning codebooks", min=0.0, max=1.0)

    def check(self) -> str | None:
        if self.music_norm and not self.music_features:
            return "music_norm=true normalizes the music-feature branches: set music_features=true"
        if self.text_width % self.text_heads:
            return f"text_width={self.text_width} must be a multiple of text_heads={self.text_heads}"
        return None

    @property
    def hop(self) -> int:
        """Samples per 50 Hz mel frame."""
        return self.sample_rate // 50

    @property
    def frame_rate(self) -> float:
        """Rate of the audio tower's per-frame features (25 Hz by default)."""
        return 50.0 / self.patch_frames

    @property
    def crop_samples(self) -> int:
        """Training crop in samples, a whole number of tower frames."""
        step = self.hop * self.patch_frames
        return max(1, round(self.crop_seconds * self.sample_rate / step)) * step


register_presets(MulanConfig, {
    "tiny": MulanConfig(crop_seconds=1.0, n_mels=32, audio_width=32, audio_depth=1,
                        vocab_size=320, max_text_len=32, text_width=32, text_depth=1,
                        text_heads=2, rvq_codebook_size=8, rvq_decay=0.9,
                        music_features=True, music_width=8),
    # The branches are opt-in (model.music_features=true, model.numeric_features=true): the
    # committed small model (C+t, docs/mulan.md) grew them in finetunes of a model without.
    "small": MulanConfig(),
    "base": MulanConfig(crop_seconds=10.0, n_mels=128, audio_width=512, audio_depth=12,
                        vocab_size=8192, max_text_len=96, text_width=512, text_depth=8,
                        text_heads=8),
})
