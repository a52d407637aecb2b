"""The neural audio codec (acoustic tokens): SoundStream-style encoder, residual VQ,
Vocos-style iSTFT decoder. See :mod:`musicrl.codec.model` for the contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musicrl.codec.config import CodecConfig
from musicrl.codec.model import Codec, count_params

__all__ = ["Codec", "CodecConfig", "count_params", "load_codec"]


def load_codec(path: str | Path) -> tuple[Codec, dict[str, Any]]:
    """Loads a codec for inference.

    Args:
      path: a weights folder (``save_weights`` output: meta.json + weights.npz), or a
        training work dir (its ``weights/`` if exported, else its latest checkpoint).

    Returns:
      (codec, meta). Raises FileNotFoundError / CheckpointError with what to do.
    """
    from flax import nnx

    from musicrl.checkpoint import Checkpointer, load_weights
    from musicrl.codec.quantizer import TRAINING_ONLY
    from musicrl.config import from_dict

    path = Path(path)
    if (path / "meta.json").exists():
        meta = json.loads((path / "meta.json").read_text())
        model = Codec(from_dict(CodecConfig, meta["config"]), rngs=nnx.Rngs(0, vq=1))
        load_weights(path, model, optional=TRAINING_ONLY)
        return model, meta
    if (path / "weights" / "meta.json").exists():
        return load_codec(path / "weights")
    if (path / "checkpoints").exists() and (path / "config.json").exists():
        train_cfg = json.loads((path / "config.json").read_text())
        model = Codec(from_dict(CodecConfig, train_cfg["model"]), rngs=nnx.Rngs(0, vq=1))
        with Checkpointer(path / "checkpoints") as ckpt:
            extra = ckpt.restore(model=model)
        return model, {"component": "codec", "config": train_cfg["model"],
                       "steps": extra["step"], "source": f"checkpoint {path}"}
    raise FileNotFoundError(
        f"{path}: not a codec weights folder (meta.json + weights.npz) nor a training work "
        f"dir with checkpoints; train one with `musicrl train codec` or pass assets/small/codec")
