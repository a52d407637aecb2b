"""``musicrl train diversity``: the self-supervised diversity embedder (DESIGN §6.3).

Each step draws ``batch_size`` train clips and two non-overlapping chunks of
``chunk_seconds`` from each (random positions and order); the loss is the
symmetric InfoNCE of :func:`rewards.diversity.contrastive_loss`, the other
clips of the batch being the negatives. The train split is read into memory
once (float16). A hook logs chunk retrieval on valid clips (the other chunk of
the same clip among itself + distractor clips' chunks). The shared loop
(:mod:`training.loop`) owns resume, checkpoints and logs; weights are exported
to ``<workdir>/weights``.
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
from rewards.diversity import (
    DiversityConfig,
    DiversityEmbedder,
    DiversityError,
    contrastive_loss,
    embed_batched,
    save_diversity,
)
from rewards.evaluate import chunk_retrieval, fixed_chunk_pairs, read_clips
from training.loop import Hook, LastEval, LoopConfig, SeededBatches, adamw_cosine, run_loop

__all__ = ["DiversityTrainConfig", "train_diversity", "train_step", "ChunkPairs"]

SAMPLE_RATE = 16_000


@dataclasses.dataclass(frozen=True)
class DiversityTrainConfig:
    model: DiversityConfig = DiversityConfig()
    loop: LoopConfig = LoopConfig(workdir="runs/diversity-small", steps=400, log_every=25,
                                  ckpt_every=200)
    data_root: str = opt("data/small", "corpus to train on")
    chunk_seconds: float = opt(3.0, "seconds per chunk (two per clip, non-overlapping)",
                               min=0.1, max=15.0)
    batch_size: int = opt(32, "clips per step: the InfoNCE negatives", min=2)
    lr: float = opt(2e-3, "peak learning rate (AdamW, warmup + cosine decay)", min=0.0)
    warmup_steps: int = opt(100, "linear warmup steps", min=0)
    weight_decay: float = opt(1e-4, "AdamW weight decay", min=0.0)
    grad_clip: float = opt(1.0, "global gradient-norm clip", min=0.0)
    eval_every: int = opt(200, "steps between valid retrieval evaluations", min=1)
    distractors: int = opt(100, "distractor clips per query in the retrieval metric", min=1)


register_presets(DiversityTrainConfig, {
    "tiny": DiversityTrainConfig(
        model=presets_of(DiversityConfig)["tiny"],
        loop=LoopConfig(workdir="runs/diversity-tiny", steps=20, log_every=5, ckpt_every=10),
        data_root="data/tiny", chunk_seconds=1.0, batch_size=4, warmup_steps=2, eval_every=10,
        distractors=3),
    "small": DiversityTrainConfig(),
    "base": DiversityTrainConfig(model=presets_of(DiversityConfig)["base"],
                                 loop=LoopConfig(workdir="runs/diversity-base", steps=50_000),
                                 data_root="data/base", batch_size=256),
})


def _two_chunks(x: np.ndarray, c: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two non-overlapping ``c``-sample chunks at random positions, in random order."""
    if len(x) < 2 * c:
        x = np.pad(x, (0, 2 * c - len(x)))
    s1 = int(rng.integers(0, len(x) - 2 * c + 1))
    s2 = int(rng.integers(s1 + c, len(x) - c + 1))
    a, b = x[s1:s1 + c], x[s2:s2 + c]
    return (a, b) if rng.random() < 0.5 else (b, a)


class ChunkPairs(SeededBatches):
    """Batches of (chunk a, chunk b) of the same clips; the position is the step."""

    def __init__(self, audio: list[np.ndarray], chunk: int, batch: int, seed: int):
        self.audio, self.chunk, self.batch, self.seed = audio, chunk, batch, seed

    def make(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.choice(len(self.audio), self.batch, replace=len(self.audio) < self.batch)
        pairs = [_two_chunks(self.audio[i], self.chunk, rng) for i in idx]
        return {"a": np.stack([p[0] for p in pairs]).astype(np.float32),
                "b": np.stack([p[1] for p in pairs]).astype(np.float32)}


def _valid_hook(cfg: DiversityTrainConfig, chunk: int) -> Hook | None:
    from musicrl.data.manifest import load_clips

    clips = load_clips(cfg.data_root, splits=["valid"])
    if len(clips) < 2:
        print("diversity: fewer than 2 valid clips; retrieval is not evaluated")
        return None
    a, b = fixed_chunk_pairs(read_clips(cfg.data_root, clips), chunk)
    pieces = [c.piece for c in clips]

    def fn(step: int, model: DiversityEmbedder) -> dict[str, float]:
        m = chunk_retrieval(embed_batched(model, a), embed_batched(model, b), pieces,
                            cfg.distractors)
        return {f"valid/{k}": v for k, v in m.items()}

    return Hook(cfg.eval_every, fn)


@nnx.jit
def train_step(model: DiversityEmbedder, optimizer: nnx.Optimizer, a_bn: jax.Array,
               b_bn: jax.Array) -> dict[str, jax.Array]:
    """One AdamW step of the InfoNCE loss on a batch of chunk pairs."""
    (_, metrics), grads = nnx.value_and_grad(contrastive_loss, has_aux=True)(model, a_bn, b_bn)
    metrics["grad_norm"] = optax.tree.norm(grads)
    optimizer.update(model, grads)
    return metrics


def train_diversity(cfg: DiversityTrainConfig, progress: bool = True, command: str = "",
                    extra_hooks: tuple[Hook, ...] = ()) -> Path:
    """Trains (or resumes) the diversity embedder; returns the exported weights folder."""
    from musicrl.codec.model import count_params
    from musicrl.data.manifest import load_clips

    t0 = time.time()
    clips = load_clips(cfg.data_root, splits=["train"])
    if len(clips) < 2:
        raise DiversityError(f"{cfg.data_root} has {len(clips)} train clips; InfoNCE needs ≥ 2")
    chunk = round(cfg.chunk_seconds * SAMPLE_RATE)
    audio = read_clips(cfg.data_root, clips)
    model = DiversityEmbedder(cfg.model, rngs=nnx.Rngs(cfg.loop.seed))
    print(f"diversity: {count_params(model) / 1e6:.3f} M parameters, {len(clips)} train clips "
          f"read in {time.time() - t0:.0f} s")
    optimizer = adamw_cosine(model, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.loop.steps, weight_decay=cfg.weight_decay,
                             grad_clip=cfg.grad_clip)

    def step_fn(model, optimizer, batch, i):
        return train_step(model, optimizer, jnp.asarray(batch["a"]), jnp.asarray(batch["b"]))

    hook = _valid_hook(cfg, chunk)
    valid = LastEval(hook.fn) if hook else None
    final = run_loop(cfg.loop, model=model, optimizer=optimizer,
                     batches=ChunkPairs(audio, chunk, cfg.batch_size, cfg.loop.seed),
                     step_fn=step_fn, config=to_dict(cfg),
                     hooks=[*([Hook(cfg.eval_every, valid)] if valid else []), *extra_hooks],
                     items_per_step=cfg.batch_size, items_name="pairs", progress=progress,
                     desc="diversity")
    out = Path(cfg.loop.workdir) / "weights"
    if final < cfg.loop.steps:
        return out
    save_diversity(out, model, meta={
        "train_config": to_dict(cfg), "steps": final, "command": command,
        "valid": valid.at(final, model) if valid else {},
        "wall_seconds_this_session": round(time.time() - t0, 1)})
    print(f"diversity weights: {out}  valid: {valid.summary() if valid else '—'}")
    return out
