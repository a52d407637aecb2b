"""Training an ensemble of reward models: members from consecutive seeds, then their export.

``members`` = K in a reward model's training config (``musicrl train tempo|mode …
members=K``) trains K models alike from seeds seed … seed + K − 1, each the ordinary
single run in ``<workdir>/member-<i>`` (resumable on its own), then exports their
ensemble (:class:`rewards.ensemble.Ensemble`) to ``<workdir>/weights``, scored on valid
beside each member. A member that stopped before the run's last step stops the export
(its folder may still hold an older, complete export) instead of using it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from musicrl.config import to_dict

__all__ = ["train_members"]


def train_members(cfg: Any, *, name: str, train_one: Callable[[Any], Path],
                  load: Callable[[Path], tuple[Any, dict[str, Any]]], ensemble_cls: type,
                  score_valid: Callable[[Any], dict[str, float]],
                  save: Callable[..., Path], command: str) -> Path:
    """Trains ``cfg.members`` members with ``train_one(member_cfg) -> weights dir`` and
    saves their ensemble with ``save(dir, ensemble, meta=...)``; returns the weights dir."""
    t0 = time.time()
    work = Path(cfg.loop.workdir)
    models, member_valid = [], []
    for i in range(cfg.members):
        sub = dataclasses.replace(cfg, members=1, loop=dataclasses.replace(
            cfg.loop, seed=cfg.loop.seed + i, workdir=str(work / f"member-{i}")))
        print(f"{name} ensemble: member {i + 1} of {cfg.members} (seed {sub.loop.seed})")
        w = train_one(sub)
        if not (w / "meta.json").exists():
            return work / "weights"                     # a member stopped early: resume later
        model, meta = load(w)
        if meta.get("steps") != cfg.loop.steps:         # an older export; this run stopped early
            return work / "weights"
        models.append(model)
        member_valid.append(meta.get("valid", {}))
    ens = ensemble_cls.of(models)
    valid = {f"valid/{k}": v for k, v in score_valid(ens).items()}
    out = work / "weights"
    save(out, ens, meta={
        "train_config": to_dict(cfg), "steps": cfg.loop.steps, "command": command,
        "valid": valid, "member_valid": member_valid,
        "wall_seconds_this_session": round(time.time() - t0, 1)})
    print(f"{name} ensemble of {cfg.members}: {out}  valid: "
          + "  ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in valid.items()
                      if not k.endswith("clips")))
    return out
