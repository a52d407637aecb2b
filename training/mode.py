"""``musicrl train mode``: the mode reward model on semantic tokens (rewards/mode.py), or
with ``--preset small-acoustic`` on the first codec levels, stage A's output.

Each step draws ``batch_size`` train clips (from ``data_root`` and every ``extra_data``
root, e.g. one made by ``musicrl data mode-variants``: each train clip in its parallel
mode) and a random crop of ``crop_seconds`` of each one's semantic tokens; the target is
the clip's labelled key (tonic and mode, 24 classes; :func:`rewards.mode.mode_loss`).
Batches are a pure function of (seed, step), so a resumed run sees the batches an
uninterrupted one would. A hook scores the first ``crop_seconds`` of every valid clip.
``members`` > 1 trains that many models from seeds seed, seed+1, … (each resumable in
``<workdir>/member-<i>``) and exports their ensemble. The shared loop
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
from rewards.mode import (
    ModeConfig,
    ModeEnsemble,
    ModeError,
    ModeModel,
    keyed_tokens,
    load_mode,
    mode_loss,
    save_mode,
    score_mode,
)
from training.ensemble import train_members
from training.loop import Hook, LastEval, LoopConfig, SeededBatches, adamw_cosine, run_loop

__all__ = ["ModeTrainConfig", "train_mode", "train_step", "KeyCrops"]


@dataclasses.dataclass(frozen=True)
class ModeTrainConfig:
    model: ModeConfig = ModeConfig()
    loop: LoopConfig = LoopConfig(workdir="runs/mode-small", steps=1200, log_every=50,
                                  ckpt_every=200)
    data_root: str = opt("data/small", "corpus whose token cache (<root>/tokens) to train on")
    extra_data: str = opt("", "more roots (comma-separated) whose train clips join the "
                              "training set, e.g. data/small-mode")
    crop_seconds: float = opt(8.0, "seconds of tokens per training crop", min=0.2, max=60.0)
    batch_size: int = opt(64, "crops per step", min=1)
    lr: float = opt(2e-3, "peak learning rate (AdamW, warmup + cosine decay)", min=0.0)
    warmup_steps: int = opt(100, "linear warmup steps", min=0)
    weight_decay: float = opt(0.05, "AdamW weight decay", min=0.0)
    grad_clip: float = opt(1.0, "global gradient-norm clip", min=0.0)
    eval_every: int = opt(200, "steps between valid evaluations", min=1)
    token_noise: float = opt(0.3, "fraction of each training crop's tokens replaced by random "
                                  "ids (augmentation against memorizing the train pieces)",
                             min=0.0, max=0.9)
    members: int = opt(1, "models trained alike from seeds seed, seed+1, … (each in "
                          "<workdir>/member-<i>) whose probabilities the exported ensemble "
                          "averages; 1: one model", min=1, max=64)


register_presets(ModeTrainConfig, {
    "tiny": ModeTrainConfig(
        model=presets_of(ModeConfig)["tiny"],
        loop=LoopConfig(workdir="runs/mode-tiny", steps=20, log_every=5, ckpt_every=10),
        data_root="data/tiny", crop_seconds=1.0, batch_size=8, warmup_steps=2, eval_every=10),
    "tiny-acoustic": ModeTrainConfig(
        model=presets_of(ModeConfig)["tiny-acoustic"],
        loop=LoopConfig(workdir="runs/mode-tiny-acoustic", steps=10, log_every=5, ckpt_every=10),
        data_root="data/tiny", crop_seconds=1.0, batch_size=8, warmup_steps=2, eval_every=10),
    "small": ModeTrainConfig(),
    "small-acoustic": ModeTrainConfig(model=presets_of(ModeConfig)["small-acoustic"],
                                      loop=LoopConfig(workdir="runs/mode-acoustic", steps=1200,
                                                      log_every=50, ckpt_every=200)),
    "base": ModeTrainConfig(model=presets_of(ModeConfig)["base"],
                            loop=LoopConfig(workdir="runs/mode-base", steps=20_000),
                            data_root="data/base", batch_size=256),
})


class KeyCrops(SeededBatches):
    """Batches of (token crop, key index); batch i is a pure function of (seed, i)."""

    def __init__(self, seqs: list[np.ndarray], keys: np.ndarray, frames: int, batch: int,
                 seed: int, noise: float = 0.0, vocab: int = 0):
        keep = [i for i, s in enumerate(seqs) if len(s) >= frames]
        if not keep:
            raise ModeError(f"no clip has {frames} frames of tokens; lower crop_seconds")
        self.seqs = [seqs[i] for i in keep]
        self.keys = keys[keep]
        self.frames, self.batch, self.seed = frames, batch, seed
        self.noise, self.vocab = noise, vocab

    def make(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.integers(0, len(self.seqs), self.batch)
        crops = []
        for i in idx:
            o = int(rng.integers(0, len(self.seqs[i]) - self.frames + 1))
            crops.append(self.seqs[i][o:o + self.frames])
        tokens = np.stack(crops)
        if self.noise > 0:
            swap = rng.random(tokens.shape) < self.noise
            tokens = np.where(swap, rng.integers(0, self.vocab, tokens.shape), tokens)
        return {"tokens": tokens.astype(np.int32), "key": self.keys[idx]}


@nnx.jit
def train_step(model: ModeModel, optimizer: nnx.Optimizer, tokens_bs: jax.Array,
               key_b: jax.Array) -> dict[str, jax.Array]:
    (_, metrics), grads = nnx.value_and_grad(mode_loss, has_aux=True)(model, tokens_bs, key_b)
    metrics["grad_norm"] = optax.tree.norm(grads)
    optimizer.update(model, grads)
    return metrics


def _valid(seqs: list[np.ndarray], keys: np.ndarray, frames: int) -> LastEval:
    def fn(step: int, model: ModeModel) -> dict[str, float]:
        model.eval()
        try:
            return {f"valid/{k}": v for k, v in score_mode(model, seqs, keys, frames).items()}
        finally:
            model.train()
    return LastEval(fn)


def train_mode(cfg: ModeTrainConfig, progress: bool = True, command: str = "",
               extra_hooks: tuple[Hook, ...] = ()) -> Path:
    """Trains (or resumes) the mode model — or, with ``members`` > 1, each member in turn and
    then their ensemble — and returns the exported weights folder."""
    if cfg.members > 1:
        return _train_ensemble(cfg, progress, command, extra_hooks)
    from musicrl.codec.model import count_params
    from musicrl.data.variants import split_roots

    t0 = time.time()
    lv = cfg.model.levels
    seqs, keys = keyed_tokens(cfg.data_root, "train", lv)
    for root in split_roots(cfg.extra_data):
        s, k = keyed_tokens(root, "train", lv)
        seqs, keys = seqs + s, np.concatenate([keys, k])
    top = max(int(s.max()) for s in seqs)
    if top >= cfg.model.vocab:
        raise ModeError(f"the token caches hold {'codec' if lv else 'semantic'} ids up to {top} "
                        f"but model.vocab={cfg.model.vocab}: set it to the "
                        f"{'codec codebook' if lv else 'semantic tokenizer'}'s size")
    frames = int(round(cfg.crop_seconds * cfg.model.frame_rate))
    if frames < cfg.model.min_frames:
        raise ModeError(f"crop_seconds={cfg.crop_seconds} gives {frames} frames; the model "
                        f"reads at least model.min_frames={cfg.model.min_frames}: raise the crop")
    v_seqs, v_keys = keyed_tokens(cfg.data_root, "valid", lv)
    model = ModeModel(cfg.model, rngs=nnx.Rngs(cfg.loop.seed))
    print(f"mode: {count_params(model) / 1e6:.3f} M parameters, {len(seqs)} train streams "
          f"({np.mean(keys >= 12):.2f} minor), {len(v_seqs)} valid")
    optimizer = adamw_cosine(model, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.loop.steps, weight_decay=cfg.weight_decay,
                             grad_clip=cfg.grad_clip)

    def step_fn(model, optimizer, batch, i):
        return train_step(model, optimizer, jnp.asarray(batch["tokens"]),
                          jnp.asarray(batch["key"]))

    valid = _valid(v_seqs, v_keys, frames)
    final = run_loop(cfg.loop, model=model, optimizer=optimizer,
                     batches=KeyCrops(seqs, keys, frames, cfg.batch_size, cfg.loop.seed,
                                      cfg.token_noise, cfg.model.vocab),
                     step_fn=step_fn, config=to_dict(cfg),
                     hooks=[Hook(cfg.eval_every, valid), *extra_hooks],
                     items_per_step=cfg.batch_size, items_name="crops", progress=progress,
                     desc="mode")
    out = Path(cfg.loop.workdir) / "weights"
    if final < cfg.loop.steps:
        return out
    metrics = valid.at(final, model)
    model.eval()
    save_mode(out, model, meta={
        "train_config": to_dict(cfg), "steps": final, "command": command, "valid": metrics,
        "wall_seconds_this_session": round(time.time() - t0, 1)})
    print(f"mode weights: {out}  valid: {valid.summary()}")
    return out


def _train_ensemble(cfg: ModeTrainConfig, progress: bool, command: str,
                    extra_hooks: tuple[Hook, ...]) -> Path:
    """Members 0…K−1, then their ensemble (:func:`training.ensemble.train_members`)."""
    frames = int(round(cfg.crop_seconds * cfg.model.frame_rate))

    def score_valid(ens: ModeEnsemble) -> dict[str, float]:
        ens.eval()
        return score_mode(ens, *keyed_tokens(cfg.data_root, "valid", cfg.model.levels), frames)

    return train_members(
        cfg, name="mode", load=load_mode, ensemble_cls=ModeEnsemble, save=save_mode,
        train_one=lambda sub: train_mode(sub, progress=progress, command=command,
                                         extra_hooks=extra_hooks),
        score_valid=score_valid, command=command)
