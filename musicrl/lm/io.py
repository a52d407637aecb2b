"""Saving and loading a trained stage (inference weights + the config that made it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musicrl.errors import MusicrlError

__all__ = ["StageLoadError", "save_stage", "load_stage"]


class StageLoadError(MusicrlError, ValueError):
    """A stage folder is missing, incomplete or of another kind; the message says what to do."""


def save_stage(path: str | Path, model, meta: dict[str, Any], dtype: Any = None) -> Path:
    """Writes ``weights.npz`` + ``meta.json`` (with the stage config) to ``path``."""
    from musicrl.checkpoint import save_weights
    from musicrl.config import to_dict

    save_weights(path, model, dtype=dtype,
                 meta={"component": f"lm-{model.cfg.stage}", "config": to_dict(model.cfg),
                       **meta})
    return Path(path)


def load_stage(path: str | Path, stage: str | None = None):
    """Rebuilds a :class:`StageLM` from :func:`save_stage` output (or a work dir's ``weights``).

    Args:
      stage: if given ("semantic" / "acoustic"), refuse a folder holding the other stage.
    Returns:
      (model, meta).
    """
    from flax import nnx

    from musicrl.checkpoint import load_weights
    from musicrl.config import ConfigError, from_dict
    from musicrl.lm.stages import StageConfig, StageLM

    path = Path(path)
    if not (path / "meta.json").exists() and (path / "weights" / "meta.json").exists():
        path = path / "weights"
    if not (path / "meta.json").exists():
        raise StageLoadError(f"{path}: not a generator stage folder (no meta.json); train one "
                             "with `musicrl train lm --stage semantic|acoustic` and pass its "
                             "<workdir>/weights")
    meta = json.loads((path / "meta.json").read_text())
    comp = str(meta.get("component", ""))
    if not comp.startswith("lm-"):
        raise StageLoadError(f"{path} holds a {comp!r} model, not a generator stage")
    if stage is not None and comp != f"lm-{stage}":
        raise StageLoadError(f"{path} holds the {comp[3:]} stage where the {stage} stage was "
                             "expected")
    try:
        cfg = from_dict(StageConfig, meta["config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise StageLoadError(f"{path}: its config does not fit this version of musicrl ({e})"
                             ) from None
    model = StageLM(cfg, rngs=nnx.Rngs(0))
    load_weights(path, model)
    return model, meta
