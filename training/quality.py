"""``musicrl train quality``: the quality (MOS) predictor, from degradations or human ratings.

Two modes on the shared loop (:mod:`training.loop`: resume, checkpoints, logs):

* **degradations** (default): one fixed crop of every train clip and its codec
  versions (the expensive part: codec encode/decode) are computed once into
  ``<cache_dir>/train-*.npz``; the cheap families (noise, clipping, low-pass,
  dropout) are applied on the fly, so noise and gaps differ at every step. A
  batch holds ``batch_clips`` clips × ``versions_per_clip`` versions of each
  (the clean crop, then pairs of settings of the same family), which is what the
  ranking loss compares (:func:`rewards.quality.quality_loss`). Only train
  settings of :mod:`rewards.degrade` are used; held-out settings and test
  clips are for ``musicrl eval quality``.
* **ratings** (``ratings=FILE``): finetunes ``init=`` weights on human 1–5
  ratings (:mod:`rewards.ratings` describes the JSONL format); every 5th row is
  held out, and Spearman/Pearson/MSE on it are logged before and after.

Weights are exported to ``<workdir>/weights``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from musicrl.config import opt, presets_of, register_presets, to_dict
from rewards import degrade
from rewards.quality import (
    QualityConfig,
    QualityError,
    QualityModel,
    better_matrix,
    load_quality,
    quality_loss,
    rating_loss,
    save_quality,
    score_batched,
)
from rewards.ratings import load_ratings, read_rating_audio
from training.loop import Hook, LastEval, LoopConfig, SeededBatches, adamw_cosine, run_loop

__all__ = ["QualityTrainConfig", "train_quality", "train_step", "DegradationBatches",
           "RatingBatches"]


def _check_families(fams: tuple[str, ...]) -> str | None:
    bad = set(fams) - set(degrade.FAMILIES)
    return f"unknown families {sorted(bad)}; choose from {list(degrade.FAMILIES)}" if bad else None


@dataclasses.dataclass(frozen=True)
class QualityTrainConfig:
    model: QualityConfig = presets_of(QualityConfig)["small"]
    loop: LoopConfig = LoopConfig(workdir="runs/quality-small", steps=500, log_every=25,
                                  ckpt_every=250)
    data_root: str = opt("data/small", "corpus whose train clips are degraded")
    codec: str = opt("assets/small/codec", "codec weights for the codec/tokens families")
    families: tuple[str, ...] = opt(tuple(degrade.FAMILIES), "degradation families to train on",
                                    check=_check_families)
    cache_dir: str = opt("runs/quality-cache", "where the degraded crops are cached")
    max_clips: int = opt(900, "use at most this many train clips, evenly spaced (0: all)",
                         min=0)
    crop_seconds: float = opt(3.0, "seconds per crop", min=0.2, max=30.0)
    batch_clips: int = opt(12, "clips per step", min=1)
    versions_per_clip: int = opt(6, "versions per clip per step (clean + degraded)", min=2)
    continuous: bool = opt(True, "draw noise/clip/lowpass/dropout parameters from the whole "
                           "train range (minus a window around held-out settings)")
    lr: float = opt(2e-3, "peak learning rate (AdamW, warmup + cosine decay)", min=0.0)
    warmup_steps: int = opt(100, "linear warmup steps", min=0)
    weight_decay: float = opt(1e-4, "AdamW weight decay", min=0.0)
    grad_clip: float = opt(1.0, "global gradient-norm clip", min=0.0)
    rank_weight: float = opt(1.0, "weight of the pairwise ranking loss", min=0.0)
    reg_weight: float = opt(0.1, "weight of the regression to the severity target", min=0.0)
    rank_scale: float = opt(4.0, "k in −log σ(k (s_i − s_j)) (scores are in MOS units)",
                            min=0.0)
    eval_every: int = opt(250, "steps between validation (pair accuracy, Spearman)", min=1)
    eval_clips: int = opt(48, "valid clips in the validation set", min=2)
    ratings: str = opt("", "human ratings JSONL: finetune on it instead (see rewards.ratings)")
    init: str = opt("", "weights to start from (ratings mode; e.g. assets/small/quality)")


register_presets(QualityTrainConfig, {
    "tiny": QualityTrainConfig(
        model=presets_of(QualityConfig)["tiny"],
        loop=LoopConfig(workdir="runs/quality-tiny", steps=20, log_every=5, ckpt_every=10),
        data_root="data/tiny", families=("noise", "clip", "lowpass", "dropout"),
        cache_dir="runs/quality-cache-tiny", crop_seconds=1.0, batch_clips=3,
        versions_per_clip=5, warmup_steps=2, eval_every=10, eval_clips=4),
    "small": QualityTrainConfig(),
    "base": QualityTrainConfig(model=presets_of(QualityConfig)["base"],
                               loop=LoopConfig(workdir="runs/quality-base", steps=50_000),
                               data_root="data/base", batch_clips=32),
})


def _crop_samples(cfg: QualityTrainConfig, hop: int = 320) -> int:
    return max(hop, round(cfg.crop_seconds * 16_000 / hop) * hop)  # codec hop multiple


def _codec(cfg: QualityTrainConfig) -> Any:
    if not set(cfg.families) & set(degrade.CODEC_FAMILIES):
        return None
    from musicrl.codec import load_codec

    return load_codec(cfg.codec)[0]


# ----------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------

class DegradationBatches(SeededBatches):
    """Versions of train clips; the position is the step (each step's draw is seeded)."""

    def __init__(self, data: degrade.DegradedSet, cfg: QualityTrainConfig):
        self.data, self.cfg, self.seed = data, cfg, cfg.loop.seed
        self.by_family: dict[str, list[degrade.Setting]] = {}
        for s in data.settings.values():
            self.by_family.setdefault(s.family, []).append(s)
        self.fam_index = {f: i for i, f in enumerate(degrade.FAMILIES)}

    def _jitter(self, s: degrade.Setting, rng: np.random.Generator) -> degrade.Setting:
        if not self.cfg.continuous or s.family in degrade.CODEC_FAMILIES:
            return s  # the codec versions are cached at their fixed settings
        return degrade.Setting(s.family, degrade.FAMILIES[s.family].sample_train(rng))

    def _version(self, i: int, s: degrade.Setting, rng: np.random.Generator) -> np.ndarray:
        if s.family in degrade.CODEC_FAMILIES:
            return self.data.versions[s.key][i]
        return degrade.apply_cheap(self.data.clean[i], s, rng)

    def make(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        g = self.cfg.versions_per_clip
        fams = list(self.by_family)
        wav, group, fam, sev = [], [], [], []
        for k, i in enumerate(rng.choice(len(self.data.clean), self.cfg.batch_clips,
                                         replace=len(self.data.clean) < self.cfg.batch_clips)):
            chosen: list[degrade.Setting] = []
            while len(chosen) < g - 1:  # pairs from one family: within-family order
                f = self.by_family[fams[rng.integers(len(fams))]]
                take = min(2, g - 1 - len(chosen), len(f))
                chosen += [self._jitter(f[j], rng) for j in rng.choice(len(f), take,
                                                                      replace=False)]
            wav.append(self.data.clean[i])
            group.append(k), fam.append(-1), sev.append(0.0)
            for s in chosen:
                wav.append(self._version(i, s, rng))
                group.append(k), fam.append(self.fam_index[s.family]), sev.append(s.severity)
        fam_a, sev_a = np.asarray(fam), np.asarray(sev, np.float32)
        return {"wav": np.stack(wav).astype(np.float32), "group": np.asarray(group, np.int32),
                "severity": sev_a, "better": better_matrix(fam_a, sev_a)}


class RatingBatches(SeededBatches):
    """Random crops of rated clips; the position is the step."""

    def __init__(self, audio: list[np.ndarray], ratings: np.ndarray, n: int, batch: int,
                 seed: int):
        self.audio, self.ratings, self.n, self.batch, self.seed = audio, ratings, n, batch, seed

    def make(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.choice(len(self.audio), self.batch, replace=len(self.audio) < self.batch)
        return {"wav": np.stack([_crop(self.audio[i], self.n, rng) for i in idx]),
                "rating": self.ratings[idx].astype(np.float32)}


def _crop(x: np.ndarray, n: int, rng: np.random.Generator | None) -> np.ndarray:
    if len(x) <= n:
        return np.pad(x, (0, n - len(x))).astype(np.float32)
    start = (len(x) - n) // 2 if rng is None else int(rng.integers(0, len(x) - n + 1))
    return x[start:start + n].astype(np.float32)


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------

def ranking_metrics(score: np.ndarray, severity: np.ndarray, clean_score: np.ndarray,
                    n_versions: int) -> dict[str, float]:
    """Spearman ρ(score, −severity) over all rows and % clean-above-degraded pairs.

    Rows are ``[clean..., version_1..., version_2...]`` with ``n_versions`` degraded
    blocks of ``len(clean_score)`` rows each.
    """
    from scipy.stats import spearmanr

    rho = spearmanr(score, -severity).statistic
    deg = score[len(clean_score):].reshape(n_versions, len(clean_score))
    return {"spearman": float(rho), "clean_above": float(np.mean(clean_score[None] > deg))}


def _valid_hook(cfg: QualityTrainConfig, codec: Any) -> Hook:
    """Valid clips × held-out settings: Spearman and clean-above-degraded (for monitoring)."""
    from musicrl.data.manifest import load_clips

    clips = load_clips(cfg.data_root, splits=["valid"])[: cfg.eval_clips]
    ss = degrade.settings("test", cfg.families)
    data = degrade.build_degraded_set(
        cfg.data_root, clips, crop_samples=_crop_samples(cfg), setting_list=ss, codec=codec,
        seed=cfg.loop.seed + 1, cache=str(Path(cfg.cache_dir) / "valid.npz"), progress=False)
    wav = np.concatenate([data.clean, *[data.versions[s.key] for s in ss]])
    sev = np.concatenate([np.zeros(len(clips))] + [np.full(len(clips), s.severity) for s in ss])

    def fn(step: int, model: QualityModel) -> dict[str, float]:
        score = score_batched(model, wav)
        m = ranking_metrics(score, sev, score[: len(clips)], len(ss))
        return {f"valid/{k}": v for k, v in m.items()}

    return Hook(cfg.eval_every, fn)


def rating_metrics(score: np.ndarray, rating: np.ndarray) -> dict[str, float]:
    """Spearman, Pearson and MSE of predicted scores against ratings."""
    from scipy.stats import pearsonr, spearmanr

    constant = np.ptp(score) == 0 or np.ptp(rating) == 0
    return {"spearman": 0.0 if constant else float(spearmanr(score, rating).statistic),
            "pearson": 0.0 if constant else float(pearsonr(score, rating).statistic),
            "mse": float(np.mean((score - rating) ** 2))}


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------

@functools.partial(nnx.jit, static_argnames=("ratings_mode", "weights"))
def train_step(model: QualityModel, optimizer: nnx.Optimizer, batch: dict[str, jax.Array], *,
               ratings_mode: bool, weights: tuple[float, float, float]) -> dict[str, jax.Array]:
    """One AdamW step; ``weights`` = (rank_weight, reg_weight, rank_scale)."""
    rank_w, reg_w, scale = weights
    if ratings_mode:
        fn = lambda m: rating_loss(m, batch["wav"], batch["rating"],  # noqa: E731
                                   rank_weight=rank_w, rank_scale=scale)
    else:
        fn = lambda m: quality_loss(m, batch["wav"], batch["group"],  # noqa: E731
                                    batch["severity"], batch["better"], rank_weight=rank_w,
                                    reg_weight=reg_w, rank_scale=scale)
    (_, metrics), grads = nnx.value_and_grad(fn, has_aux=True)(model)
    metrics["grad_norm"] = optax.tree.norm(grads)
    optimizer.update(model, grads)
    return metrics


def _make_step(cfg: QualityTrainConfig, ratings_mode: bool):
    weights = (cfg.rank_weight, cfg.reg_weight, cfg.rank_scale)
    return lambda model, optimizer, batch, i: train_step(
        model, optimizer, {k: jnp.asarray(v) for k, v in batch.items()},
        ratings_mode=ratings_mode, weights=weights)


def _init_model(cfg: QualityTrainConfig) -> tuple[QualityModel, dict[str, Any]]:
    if cfg.init:
        return load_quality(cfg.init)
    return QualityModel(cfg.model, rngs=nnx.Rngs(cfg.loop.seed)), {}


def train_quality(cfg: QualityTrainConfig, progress: bool = True, command: str = "",
                  extra_hooks: tuple[Hook, ...] = ()) -> Path:
    """Trains (or resumes) the quality model; returns the exported weights folder."""
    if cfg.ratings:
        return _train_on_ratings(cfg, progress, command, extra_hooks)
    from musicrl.codec.model import count_params
    from musicrl.data.manifest import load_clips

    t0 = time.time()
    model, init_meta = _init_model(cfg)
    clips = load_clips(cfg.data_root, splits=["train"])
    if cfg.max_clips and len(clips) > cfg.max_clips:  # evenly spaced: every style and piece
        clips = [clips[i] for i in np.linspace(0, len(clips) - 1, cfg.max_clips).astype(int)]
    if not clips:
        raise QualityError(f"no train clips under {cfg.data_root}")
    codec = _codec(cfg)
    train_settings = degrade.settings("train", cfg.families)
    n = _crop_samples(cfg)
    tag = f"train-{len(clips)}x{n}-s{cfg.loop.seed}"
    data = degrade.build_degraded_set(
        cfg.data_root, clips, crop_samples=n,
        setting_list=[s for s in train_settings if s.family in degrade.CODEC_FAMILIES],
        codec=codec, seed=cfg.loop.seed, cache=str(Path(cfg.cache_dir) / f"{tag}.npz"),
        progress=progress)
    data.settings = {s.key: s for s in train_settings}
    cache_s = time.time() - t0
    print(f"quality: {count_params(model) / 1e6:.3f} M parameters, {len(clips)} train clips "
          f"× {len(train_settings)} settings ({cache_s:.0f} s to load/build the cache)")
    batches = DegradationBatches(data, cfg)
    optimizer = adamw_cosine(model, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.loop.steps, weight_decay=cfg.weight_decay,
                             grad_clip=cfg.grad_clip)
    hook = _valid_hook(cfg, codec)
    valid = LastEval(hook.fn)

    final = run_loop(cfg.loop, model=model, optimizer=optimizer, batches=batches,
                     step_fn=_make_step(cfg, False), config=to_dict(cfg),
                     hooks=[Hook(cfg.eval_every, valid), *extra_hooks],
                     items_per_step=cfg.batch_clips * cfg.versions_per_clip * cfg.crop_seconds,
                     items_name="audio_s", progress=progress, desc="quality")
    out = Path(cfg.loop.workdir) / "weights"
    if final < cfg.loop.steps:
        return out
    save_quality(out, model, meta={
        "train_config": to_dict(cfg), "steps": final, "command": command,
        "valid": valid.at(final, model),
        "wall_seconds_this_session": round(time.time() - t0, 1)})
    print(f"quality weights: {out}  valid: {valid.summary()}")
    return out


def _train_on_ratings(cfg: QualityTrainConfig, progress: bool, command: str,
                      extra_hooks: tuple[Hook, ...]) -> Path:
    rows = load_ratings(cfg.ratings)
    if len(rows) < 5:
        raise QualityError(f"{cfg.ratings}: {len(rows)} ratings; finetuning needs at least 5 "
                           "(every 5th row is held out for validation)")
    t0 = time.time()
    model, init_meta = _init_model(cfg)
    audio = [read_rating_audio(r) for r in rows]
    rating = np.asarray([r.rating for r in rows], np.float32)
    valid = np.arange(len(rows)) % 5 == 4
    n = _crop_samples(cfg)
    train_idx = np.flatnonzero(~valid)
    batches = RatingBatches([audio[i] for i in train_idx], rating[train_idx], n,
                            cfg.batch_clips * cfg.versions_per_clip, cfg.loop.seed)
    valid_wav = np.stack([_crop(audio[i], n, None) for i in np.flatnonzero(valid)])
    valid_rating = rating[valid]

    def evaluate(step, m):
        return {f"valid/{k}": v for k, v in
                rating_metrics(score_batched(m, valid_wav), valid_rating).items()}

    before = evaluate(0, model)
    print(f"quality finetune: {len(train_idx)} train and {int(valid.sum())} held-out ratings; "
          "before: " + ", ".join(f"{k}={v:.3f}" for k, v in before.items()))
    optimizer = adamw_cosine(model, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.loop.steps, weight_decay=cfg.weight_decay,
                             grad_clip=cfg.grad_clip)
    final = run_loop(cfg.loop, model=model, optimizer=optimizer, batches=batches,
                     step_fn=_make_step(cfg, True), config=to_dict(cfg),
                     hooks=[Hook(cfg.eval_every, evaluate), *extra_hooks], progress=progress,
                     desc="quality-ratings")
    out = Path(cfg.loop.workdir) / "weights"
    if final < cfg.loop.steps:
        return out
    after = evaluate(final, model)
    print("after: " + ", ".join(f"{k}={v:.3f}" for k, v in after.items()))
    save_quality(out, model, meta={
        "train_config": to_dict(cfg), "steps": final, "command": command,
        "finetuned_from": cfg.init or None, "init_meta_steps": init_meta.get("steps"),
        "ratings": {"file": cfg.ratings, "rows": len(rows), "held_out": int(valid.sum())},
        "valid_before": before, "valid_after": after,
        "wall_seconds_this_session": round(time.time() - t0, 1)})
    return out
