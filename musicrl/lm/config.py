"""Configuration of the generator backbones (DESIGN §7): a decoder-only transformer
or Griffin (RecurrentGemma), chosen per stage by ``kind``.

Both backbones map already-embedded inputs ``[b, t, d]`` to ``[b, t, d]``; the
stage models own the token embeddings and the output heads, so nothing here
knows a vocabulary.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from musicrl.config import opt, register_presets

__all__ = ["BackboneConfig", "BLOCK_KINDS"]

BLOCK_KINDS = ("recurrent", "attention")


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Shape of one backbone. Fields prefixed by a Griffin concept are ignored by the
    transformer (``lru_*``, ``conv_width``, ``window``, ``block_pattern``)."""

    kind: str = opt("transformer", "backbone family", choices=("transformer", "griffin"))
    width: int = opt(320, "residual stream width d", min=8)
    depth: int = opt(6, "number of residual blocks", min=1, max=256)
    heads: int = opt(5, "query heads h (Griffin: also the block-diagonal blocks of the RG-LRU "
                        "gates)", min=1, max=256)
    kv_heads: int = opt(1, "key/value heads k (1 = MQA, heads = MHA, between = GQA); must "
                           "divide heads", min=1, max=256)
    head_dim: int = opt(64, "dimension e of each attention head (even, for RoPE)", min=2)
    mlp_ratio: float = opt(3.0, "gated-MLP hidden width as a multiple of width (when "
                                "mlp_hidden=0)", min=0.25, max=16.0)
    mlp_hidden: int = opt(0, "gated-MLP hidden width f; 0 = round(mlp_ratio·width)", min=0)
    activation: str = opt("swiglu", "gated-MLP activation: SiLU (SwiGLU) or GeLU (GeGLU)",
                          choices=("swiglu", "geglu"))
    rope_base: float = opt(10_000.0, "RoPE maximum wavelength", min=1.0)
    dropout: float = opt(0.0, "residual dropout on every block's mixing and MLP output "
                              "(training only: active when a dropout key is passed)",
                         min=0.0, max=0.9)
    norm_eps: float = opt(1e-6, "RMSNorm epsilon", min=0.0, max=1e-2)
    # Griffin only ---------------------------------------------------------------------
    lru_width: int = opt(0, "Griffin: RG-LRU width r; 0 = width (must be a multiple of "
                            "heads)", min=0)
    conv_width: int = opt(4, "Griffin: temporal Conv1D width before the RG-LRU", min=1, max=16)
    window: int = opt(256, "Griffin: local attention window (keys before the query, "
                           "the ring-buffer length of the sampling cache)", min=1)
    block_pattern: tuple[str, ...] = opt(
        ("recurrent", "recurrent", "attention"),
        "Griffin: temporal-mixing block kinds, repeated over the depth", choices=BLOCK_KINDS)
    lru_c: float = opt(8.0, "Griffin: the constant c in a_t = a^(c·r_t) (Griffin §2.4)",
                       min=1.0, max=64.0)
    lru_scan: str = opt("associative", "Griffin: scan used for training/prefill (both exact; "
                                       "associative is parallel over time)",
                        choices=("associative", "linear"))
    # Numerics -------------------------------------------------------------------------
    dtype: str = opt("float32", "compute dtype of activations", choices=("float32", "bfloat16"))
    param_dtype: str = opt("float32", "storage dtype of parameters",
                           choices=("float32", "bfloat16"))

    def check(self) -> str | None:
        if self.heads % self.kv_heads:
            return (f"kv_heads={self.kv_heads} must divide heads={self.heads} "
                    f"(e.g. kv_heads=1 for MQA or kv_heads={self.heads} for MHA)")
        if self.head_dim % 2:
            return f"head_dim={self.head_dim} must be even (RoPE rotates pairs of dimensions)"
        if self.kind == "griffin":
            if not self.block_pattern:
                return "block_pattern must name at least one block kind"
            if self.lru_width_ % self.heads:
                return (f"lru_width={self.lru_width_} must be a multiple of heads={self.heads} "
                        f"(the RG-LRU gates are block-diagonal with one block per head)")
        return None

    # Derived sizes ----------------------------------------------------------------------

    @property
    def mlp_hidden_(self) -> int:
        """The gated-MLP hidden width f actually used."""
        return self.mlp_hidden or max(1, round(self.mlp_ratio * self.width))

    @property
    def lru_width_(self) -> int:
        """The RG-LRU width r actually used."""
        return self.lru_width or self.width

    @property
    def block_kinds(self) -> tuple[str, ...]:
        """The temporal-mixing kind of every block, bottom to top."""
        if self.kind == "transformer":
            return ("attention",) * self.depth
        pattern = self.block_pattern
        return tuple(pattern[i % len(pattern)] for i in range(self.depth))

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def params_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.param_dtype)


register_presets(BackboneConfig, {
    # Tests: compiles and runs in well under a second.
    "tiny": BackboneConfig(width=32, depth=3, heads=4, kv_heads=2, head_dim=8, mlp_ratio=2.0,
                           window=8),
    # The default bundle, sized for a 2-core CPU: ≈ 7 M parameters for either kind.
    "small": BackboneConfig(),
    # GPU-sized, MusicLM-like proportions (not trained here): ≈ 370 M parameters.
    "base": BackboneConfig(width=1024, depth=24, heads=16, kv_heads=4, head_dim=64,
                           mlp_ratio=4.0, window=1024),
})
