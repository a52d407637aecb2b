"""What the token-level reward models share: prediction ensembles and their weights folders.

A reward model here (:mod:`rewards.tempo`, :mod:`rewards.mode`) is an ``nnx.Module`` built
as ``Model(cfg, rngs=...)`` that maps semantic tokens [b, s] to logits over its classes.
:class:`Ensemble` holds members of one config and returns the log of their mean
probability — the prediction-ensemble form of WARM: best-of-N selection seeks out the
streams one model rates too highly, and members trained from other seeds err on different
streams. Subclasses name the member class and the error to raise.

:func:`save_model` / :func:`load_model` write and read one model or an ensemble as a
weights folder (``weights.npz`` + ``meta.json``, whose ``component`` names the kind,
``config`` the member config and ``members`` an ensemble's size).

Dimension legend: ``m`` members, ``b`` batch, ``k`` classes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["Ensemble", "save_model", "load_model"]


class Ensemble(nnx.Module):
    """Members of one config; ``__call__`` returns log of their mean probability, [b, k]
    (logits in the sense every reader uses: softmax gives the mean)."""

    member_cls: ClassVar[type]
    error: ClassVar[type[Exception]] = ValueError

    def __init__(self, cfg: Any, members: int, *, rngs: nnx.Rngs):
        if members < 1:
            raise self.error(f"an ensemble needs at least one member, got {members}")
        self.cfg = cfg
        self.members = nnx.List([self.member_cls(cfg, rngs=rngs) for _ in range(members)])

    @classmethod
    def of(cls, models: Sequence[nnx.Module]) -> Ensemble:
        """The ensemble of trained ``models`` (same config, else the subclass's error)."""
        if not models:
            raise cls.error("an ensemble needs at least one member")
        for i, m in enumerate(models):
            if m.cfg != models[0].cfg:
                raise cls.error(f"member {i}'s config differs from member 0's: an ensemble "
                                "averages probabilities over the same classes and tokens")
        ens = cls(models[0].cfg, 1, rngs=nnx.Rngs(0))
        ens.members = nnx.List(list(models))
        return ens

    def member_logits(self, tokens_bs: jax.Array) -> jax.Array:
        """Each member's log-probabilities, [m, b, k]."""
        return jnp.stack([jax.nn.log_softmax(m(tokens_bs), -1) for m in self.members])

    def __call__(self, tokens_bs: jax.Array) -> jax.Array:
        return jax.nn.logsumexp(self.member_logits(tokens_bs), axis=0) - jnp.log(
            len(self.members))


def save_model(path: str | Path, model: nnx.Module, meta: dict[str, Any], component: str,
               dtype: Any = None) -> Path:
    """Inference weights + meta (``component``, ``config``; an ensemble's ``members``) to
    ``path``, atomically."""
    from musicrl.checkpoint import save_weights
    from musicrl.config import to_dict

    extra = {"members": len(model.members)} if isinstance(model, Ensemble) else {}
    save_weights(path, model, meta={**meta, **extra, "component": component,
                                    "config": to_dict(model.cfg)}, dtype=dtype)
    return Path(path)


def load_model(path: str | Path, component: str, cfg_cls: type, model_cls: type,
               ensemble_cls: type[Ensemble], hint: str) -> tuple[nnx.Module, dict[str, Any]]:
    """Loads a ``component`` model, or an ensemble when ``meta['members']`` says so, from a
    weights folder or a training work dir (its weights/); ``hint`` says how to make one.
    Errors are ``ensemble_cls.error``."""
    from musicrl.checkpoint import load_weights
    from musicrl.config import from_dict

    error = ensemble_cls.error
    path = Path(path)
    if not (path / "meta.json").exists() and (path / "weights" / "meta.json").exists():
        path = path / "weights"
    if not (path / "meta.json").exists():
        raise error(f"{path}: no {component} model (meta.json + weights.npz); {hint}")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("component") != component:
        raise error(f"{path} holds {meta.get('component', 'unknown')!r} weights, "
                    f"not a {component} model")
    cfg = from_dict(cfg_cls, meta["config"])
    members = meta.get("members")
    if members is not None and (not isinstance(members, int) or members < 1):
        raise error(f"{path}/meta.json: members={members!r} is not a positive count")
    model = (ensemble_cls(cfg, members, rngs=nnx.Rngs(0)) if members
             else model_cls(cfg, rngs=nnx.Rngs(0)))
    load_weights(path, model)
    return model, meta
