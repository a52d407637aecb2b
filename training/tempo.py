"""``musicrl train tempo``: the tempo reward model on semantic tokens (rewards/tempo.py).

Each step draws ``batch_size`` train clips (from ``data_root`` and every ``extra_data``
root, e.g. one made by ``musicrl data tempo-variants``) and a random crop of
``crop_seconds`` of each one's semantic tokens; the target is the clip's labelled BPM
(a Gaussian over log BPM, :func:`rewards.tempo.tempo_loss`). Batches are a pure function
of (seed, step), so a resumed run sees the batches an uninterrupted one would. A hook
scores the first ``crop_seconds`` of every valid clip (all, and those with drums: the
clips whose tempo the evaluation's beat tracker reads). The shared loop
(:mod:`training.loop`) owns resume, checkpoints and logs; weights go to
``<workdir>/weights``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from musicrl.config import opt, presets_of, register_presets, to_dict
from rewards.tempo import (
    TempoConfig,
    TempoEnsemble,
    TempoError,
    TempoModel,
    labelled_tokens,
    save_tempo,
    score_tempo,
    tempo_loss,
)
from training.ensemble import train_members
from training.loop import Hook, LastEval, LoopConfig, SeededBatches, adamw_cosine, run_loop

__all__ = ["TempoTrainConfig", "train_tempo", "train_step", "TokenCrops"]


@dataclasses.dataclass(frozen=True)
class TempoTrainConfig:
    model: TempoConfig = TempoConfig()
    loop: LoopConfig = LoopConfig(workdir="runs/tempo-small", steps=1500, log_every=50,
                                  ckpt_every=250)
    data_root: str = opt("data/small", "corpus whose token cache (<root>/tokens) to train on")
    extra_data: str = opt("", "more roots (comma-separated) whose train clips join the "
                              "training set, e.g. data/small-tempo")
    crop_seconds: float = opt(4.0, "seconds of tokens per training crop", min=0.5, max=60.0)
    batch_size: int = opt(64, "crops per step", min=1)
    lr: float = opt(2e-3, "peak learning rate (AdamW, warmup + cosine decay)", min=0.0)
    warmup_steps: int = opt(100, "linear warmup steps", min=0)
    weight_decay: float = opt(1e-4, "AdamW weight decay", min=0.0)
    grad_clip: float = opt(1.0, "global gradient-norm clip", min=0.0)
    eval_every: int = opt(250, "steps between valid evaluations", min=1)
    members: int = opt(1, "models trained alike from seeds seed, seed+1, … (each in "
                          "<workdir>/member-<i>) whose probabilities the exported ensemble "
                          "averages; 1: one model", min=1, max=64)


register_presets(TempoTrainConfig, {
    "tiny": TempoTrainConfig(
        model=presets_of(TempoConfig)["tiny"],
        loop=LoopConfig(workdir="runs/tempo-tiny", steps=20, log_every=5, ckpt_every=10),
        data_root="data/tiny", crop_seconds=1.0, batch_size=8, warmup_steps=2, eval_every=10),
    "small": TempoTrainConfig(),
    "base": TempoTrainConfig(model=presets_of(TempoConfig)["base"],
                             loop=LoopConfig(workdir="runs/tempo-base", steps=20_000),
                             data_root="data/base", batch_size=256),
})


class TokenCrops(SeededBatches):
    """Batches of (token crop, BPM); batch i is a pure function of (seed, i)."""

    def __init__(self, seqs: list[np.ndarray], bpm: np.ndarray, frames: int, batch: int,
                 seed: int):
        keep = [i for i, s in enumerate(seqs) if len(s) >= frames]
        if not keep:
            raise TempoError(f"no clip has {frames} frames of tokens; lower crop_seconds")
        self.seqs = [seqs[i] for i in keep]
        self.bpm = bpm[keep]
        self.frames, self.batch, self.seed = frames, batch, seed

    def make(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.integers(0, len(self.seqs), self.batch)
        crops = []
        for i in idx:
            o = int(rng.integers(0, len(self.seqs[i]) - self.frames + 1))
            crops.append(self.seqs[i][o:o + self.frames])
        return {"tokens": np.stack(crops), "bpm": self.bpm[idx]}


@nnx.jit
def train_step(model: TempoModel, optimizer: nnx.Optimizer, tokens_bs: jax.Array,
               bpm_b: jax.Array) -> dict[str, jax.Array]:
    (_, metrics), grads = nnx.value_and_grad(tempo_loss, has_aux=True)(model, tokens_bs, bpm_b)
    metrics["grad_norm"] = optax.tree.norm(grads)
    optimizer.update(model, grads)
    return metrics


def train_tempo(cfg: TempoTrainConfig, progress: bool = True, command: str = "",
                extra_hooks: tuple[Hook, ...] = ()) -> Path:
    """Trains (or resumes) the tempo model — or, with ``members`` > 1, each member in turn
    and then their ensemble — and returns the exported weights folder."""
    if cfg.members > 1:
        return _train_ensemble(cfg, progress, command, extra_hooks)
    from musicrl.codec.model import count_params
    from musicrl.data.variants import split_roots

    t0 = time.time()
    seqs, bpm, _ = labelled_tokens(cfg.data_root, "train")
    for root in split_roots(cfg.extra_data):
        s, b, _ = labelled_tokens(root, "train")
        seqs, bpm = seqs + s, np.concatenate([bpm, b])
    top = max(int(s.max()) for s in seqs)
    if top >= cfg.model.vocab:
        raise TempoError(f"the token caches hold semantic ids up to {top} but model.vocab="
                         f"{cfg.model.vocab}: set it to the semantic tokenizer's size")
    frames = int(round(cfg.crop_seconds * cfg.model.frame_rate))
    if frames <= cfg.model.max_lag:
        raise TempoError(f"crop_seconds={cfg.crop_seconds} gives {frames} frames; the model "
                         f"reads lags up to model.max_lag={cfg.model.max_lag}: raise the crop")
    v_seqs, v_bpm, v_drums = labelled_tokens(cfg.data_root, "valid")
    model = TempoModel(cfg.model, rngs=nnx.Rngs(cfg.loop.seed))
    print(f"tempo: {count_params(model) / 1e6:.3f} M parameters, {len(seqs)} train streams, "
          f"{len(v_seqs)} valid; BPM {bpm.min():.0f}–{bpm.max():.0f}")
    optimizer = adamw_cosine(model, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.loop.steps, weight_decay=cfg.weight_decay,
                             grad_clip=cfg.grad_clip)

    def step_fn(model, optimizer, batch, i):
        return train_step(model, optimizer, jnp.asarray(batch["tokens"]),
                          jnp.asarray(batch["bpm"]))

    valid = LastEval(lambda s, m: {f"valid/{k}": v for k, v in score_tempo(
        m, v_seqs, v_bpm, v_drums, frames).items()})
    final = run_loop(cfg.loop, model=model, optimizer=optimizer,
                     batches=TokenCrops(seqs, bpm, frames, cfg.batch_size, cfg.loop.seed),
                     step_fn=step_fn, config=to_dict(cfg),
                     hooks=[Hook(cfg.eval_every, valid), *extra_hooks],
                     items_per_step=cfg.batch_size, items_name="crops", progress=progress,
                     desc="tempo")
    out = Path(cfg.loop.workdir) / "weights"
    if final < cfg.loop.steps:
        return out
    save_tempo(out, model, meta={
        "train_config": to_dict(cfg), "steps": final, "command": command,
        "valid": valid.at(final, model),
        "wall_seconds_this_session": round(time.time() - t0, 1)})
    print(f"tempo weights: {out}  valid: {valid.summary()}")
    return out


def _train_ensemble(cfg: TempoTrainConfig, progress: bool, command: str,
                    extra_hooks: tuple[Hook, ...]) -> Path:
    """Members 0…K−1, then their ensemble (:func:`training.ensemble.train_members`)."""
    from rewards.tempo import load_tempo

    frames = int(round(cfg.crop_seconds * cfg.model.frame_rate))

    def score_valid(ens: TempoEnsemble) -> dict[str, float]:
        v_seqs, v_bpm, v_drums = labelled_tokens(cfg.data_root, "valid")
        return score_tempo(ens, v_seqs, v_bpm, v_drums, frames)

    return train_members(
        cfg, name="tempo", load=load_tempo, ensemble_cls=TempoEnsemble, save=save_tempo,
        train_one=lambda sub: train_tempo(sub, progress=progress, command=command,
                                          extra_hooks=extra_hooks),
        score_valid=score_valid, command=command)
