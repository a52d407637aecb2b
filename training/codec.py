"""``musicrl train codec``: the neural audio codec on the corpus.

Loss (DESIGN §5.1): multi-scale log-mel L1 + multi-resolution STFT +
β·commitment; codebooks by EMA with k-means initialization and dead-code
restarts (see :mod:`musicrl.codec.quantizer`); quantizer dropout so one model
serves 1..Q levels. The shared loop (:mod:`training.loop`) owns resume,
checkpoints, logs and hooks; this module owns the config, the step and the
example/validation hook.
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

from musicrl.codec.config import CodecConfig
from musicrl.codec.losses import mel_loss, mr_stft_loss, si_sdr
from musicrl.codec.model import Codec, count_params
from musicrl.config import opt, presets_of, register_presets, to_dict
from musicrl.data.config import LoaderConfig
from training.loop import Hook, LoopConfig, adamw_cosine, run_loop

__all__ = ["CodecTrainConfig", "train_codec", "make_optimizer", "train_step"]


@dataclasses.dataclass(frozen=True)
class CodecTrainConfig:
    model: CodecConfig = CodecConfig()
    loop: LoopConfig = LoopConfig(workdir="runs/codec-small", steps=12_000)
    data_root: str = opt("data/small", "corpus to train on (musicrl data build)")
    batch_size: int = opt(16, "clips per step", min=1)
    crop_seconds: float = opt(2.0, "seconds per training crop", min=0.1, max=30.0)
    lr: float = opt(1e-3, "peak learning rate (AdamW, warmup + cosine decay)", min=0.0)
    warmup_steps: int = opt(300, "linear warmup steps", min=0)
    weight_decay: float = opt(1e-4, "AdamW weight decay", min=0.0)
    grad_clip: float = opt(1.0, "global gradient-norm clip", min=0.0)
    mel_weight: float = opt(1.0, "weight of the multi-scale log-mel L1", min=0.0)
    stft_weight: float = opt(1.0, "weight of the multi-resolution STFT loss", min=0.0)
    commit_weight: float = opt(0.1, "weight of the VQ commitment loss", min=0.0)
    quantizer_dropout: float = opt(0.5, "fraction of examples trained with 1..Q levels",
                                   min=0.0, max=1.0)
    kmeans_batches: int = opt(8, "batches of latents for the k-means codebook init", min=1)
    sample_every: int = opt(1000, "steps between example WAVs and validation", min=1)
    num_examples: int = opt(4, "validation clips written as examples", min=1)
    valid_seconds: float = opt(5.0, "seconds of each validation clip", min=0.5)


register_presets(CodecTrainConfig, {
    "tiny": CodecTrainConfig(
        model=presets_of(CodecConfig)["tiny"],
        loop=LoopConfig(workdir="runs/codec-tiny", steps=20, log_every=5, ckpt_every=10),
        data_root="data/tiny", batch_size=2, crop_seconds=0.64, warmup_steps=2,
        kmeans_batches=2, sample_every=10, num_examples=1, valid_seconds=1.0),
    "small": CodecTrainConfig(),
    "base": CodecTrainConfig(model=presets_of(CodecConfig)["base"],
                             loop=LoopConfig(workdir="runs/codec-base", steps=200_000),
                             data_root="data/base", batch_size=32),
})


def make_optimizer(model: Codec, cfg: CodecTrainConfig) -> nnx.Optimizer:
    return adamw_cosine(model, lr=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.loop.steps,
                        weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip, b1=0.8, b2=0.99)


def _loss(model: Codec, wav: jax.Array, n_q: jax.Array, w: tuple[float, float, float]):
    y, vq = model(wav, n_q, train=True)
    mel = mel_loss(wav, y)
    stft_l = mr_stft_loss(wav, y)
    loss = w[0] * mel + w[1] * stft_l + w[2] * vq["commit_loss"]
    return loss, {"loss": loss, "mel": mel, "stft": stft_l, "commit": vq["commit_loss"],
                  "perplexity": vq["perplexity"]}


@nnx.jit(static_argnames=("weights",))
def train_step(model: Codec, optimizer: nnx.Optimizer, wav: jax.Array, n_q: jax.Array,
               weights: tuple[float, float, float]) -> dict[str, jax.Array]:
    grad_fn = nnx.value_and_grad(_loss, has_aux=True)
    (_, metrics), grads = grad_fn(model, wav, n_q, weights)
    metrics["grad_norm"] = optax.tree.norm(grads)
    optimizer.update(model, grads)
    return metrics


def sample_levels(cfg: CodecTrainConfig, step: int, b: int) -> np.ndarray:
    """Levels per example for quantizer dropout, a pure function of (seed, step)."""
    rng = np.random.default_rng([cfg.loop.seed, 7, step])
    q = cfg.model.num_levels
    n_q = np.full(b, q, np.int32)
    drop = rng.random(b) < cfg.quantizer_dropout
    n_q[drop] = rng.integers(1, q + 1, drop.sum())
    return n_q


@nnx.jit(static_argnames=("n_q",))
def _reconstruct(model: Codec, wav: jax.Array, n_q: int) -> jax.Array:
    return model.decode(model.encode(wav, n_q))


def _valid_hook(cfg: CodecTrainConfig, root: Path) -> Hook:
    """Writes example WAVs (original + 1/2/4/8 levels) and logs validation distances."""
    import soundfile as sf

    from musicrl.data.loader import read_crop
    from musicrl.data.manifest import load_clips

    clips = load_clips(cfg.data_root, splits=["valid"])[: cfg.num_examples]
    if not clips:
        clips = load_clips(cfg.data_root)[: cfg.num_examples]
    n = int(cfg.valid_seconds * cfg.model.sample_rate) // cfg.model.hop * cfg.model.hop
    rng = np.random.default_rng(0)
    wav = np.stack([read_crop(Path(cfg.data_root) / c.path, n, rng)[0] for c in clips])
    levels = sorted({q for q in (1, 2, 4, 8, cfg.model.num_levels) if q <= cfg.model.num_levels})

    def fn(step: int, model: Codec) -> dict[str, float]:
        out = root / "examples" / f"step{step:07d}"
        out.mkdir(parents=True, exist_ok=True)
        metrics = {}
        x = jnp.asarray(wav)
        for i, c in enumerate(clips):
            sf.write(out / f"{c.id}_original.wav", wav[i], cfg.model.sample_rate)
        for q in levels:
            y = _reconstruct(model, x, q)
            metrics[f"valid/mel_q{q}"] = float(mel_loss(x, y))
            metrics[f"valid/sisdr_q{q}"] = float(jnp.mean(si_sdr(x, y)))
            y = np.asarray(y)
            for i, c in enumerate(clips):
                sf.write(out / f"{c.id}_q{q}.wav", np.clip(y[i], -1, 1), cfg.model.sample_rate)
        return metrics

    return Hook(cfg.sample_every, fn)


def train_codec(cfg: CodecTrainConfig, progress: bool = True,
                extra_hooks: tuple[Hook, ...] = ()) -> Path:
    """Trains (or resumes) a codec; returns the folder of the exported inference weights."""
    from musicrl.checkpoint import save_weights
    from musicrl.data.loader import make_loader

    root = Path(cfg.loop.workdir)
    model = Codec(cfg.model, rngs=nnx.Rngs(cfg.loop.seed, vq=cfg.loop.seed + 1))
    optimizer = make_optimizer(model, cfg)
    crop = round(cfg.crop_seconds * cfg.model.sample_rate / cfg.model.hop) * cfg.model.hop
    loader = make_loader(LoaderConfig(root=cfg.data_root, split="train",
                                      batch_size=cfg.batch_size,
                                      crop_seconds=crop / cfg.model.sample_rate,
                                      seed=cfg.loop.seed))
    weights = (cfg.mel_weight, cfg.stft_weight, cfg.commit_weight)
    print(f"codec: {count_params(model) / 1e6:.2f} M parameters, "
          f"{len(loader.clips)} training clips, {cfg.model.num_levels} levels × "
          f"{cfg.model.codebook_size} codes at {cfg.model.frame_rate:g} Hz")

    def on_start(step: int) -> None:
        if step > 0:
            return
        lat = []
        for _ in range(cfg.kmeans_batches):
            wav = jnp.asarray(next(loader)["audio"])
            lat.append(np.asarray(nnx.jit(lambda m, w: m.latents(w))(model, wav)))
        lat = np.concatenate(lat).reshape(-1, cfg.model.code_dim)
        model.rvq.kmeans_init(lat, seed=cfg.loop.seed)

    def step_fn(model, optimizer, batch, step):
        wav = jnp.asarray(batch["audio"])
        n_q = jnp.asarray(sample_levels(cfg, step, wav.shape[0]))
        return train_step(model, optimizer, wav, n_q, weights)

    t0 = time.time()
    final = run_loop(cfg.loop, model=model, optimizer=optimizer, batches=loader,
                     step_fn=step_fn, config=to_dict(cfg),
                     hooks=[_valid_hook(cfg, root), *extra_hooks], on_start=on_start,
                     items_per_step=cfg.batch_size * crop / cfg.model.sample_rate,
                     items_name="audio_seconds", progress=progress, desc="codec")
    loader.close()
    out = root / "weights"
    if final >= cfg.loop.steps:
        save_weights(out, model, meta={
            "component": "codec", "config": to_dict(cfg.model), "train_config": to_dict(cfg),
            "steps": final, "train_seconds_this_session": round(time.time() - t0, 1),
            "params": count_params(model)})
        print(f"inference weights: {out}")
    return out
