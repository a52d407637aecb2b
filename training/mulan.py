"""``musicrl train mulan``: MuLan on (clip, caption) pairs, then its conditioning RVQ.

Loss (DESIGN §6.1): symmetric InfoNCE with a learned temperature over the batch;
the loader draws one caption phrasing per example and step. After the
contrastive phase the conditioning RVQ is fitted on audio embeddings of the
training split (k-means + EMA passes, :mod:`musicrl.mulan.conditioning`), and
weights + ``tokenizer.json`` are exported to ``<workdir>/weights``. A hook logs
retrieval on the valid split (text→audio and audio→text recall@1/@10, chance
beside them). Checkpoints hold the contrastive phase only; the RVQ is fitted
again from the final model whenever the run ends (also after a resume), and
only the exported weights carry it. The shared loop (:mod:`training.loop`) owns resume, checkpoints
and logs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tokenizers
from flax import nnx

from musicrl.atomic import write_text_atomic
from musicrl.codec.model import count_params
from musicrl.config import opt, presets_of, register_presets, to_dict
from musicrl.data.captioning import (
    LABEL_CLASSES,
    flip_mode,
    flip_tempo,
    label_phrase,
    make_aspect_caption,
)
from musicrl.data.config import LoaderConfig
from musicrl.mulan import (
    TOKENIZER_FILE,
    Mulan,
    MulanConfig,
    embed_audio_batched,
    embed_prompts_batched,
    fit_conditioning_rvq,
    load_mulan,
    reconstruction_cosine,
    save_mulan,
    train_text_tokenizer,
)
from training.loop import Hook, LoopConfig, adamw_cosine, run_loop

__all__ = ["MulanTrainConfig", "train_mulan", "train_step", "retrieval_metrics", "label_prompts"]


@dataclasses.dataclass(frozen=True)
class MulanTrainConfig:
    model: MulanConfig = MulanConfig()
    loop: LoopConfig = LoopConfig(workdir="runs/mulan-small", steps=8_000)
    data_root: str = opt("data/small", "corpus to train on (musicrl data build)")
    batch_size: int = opt(32, "(clip, caption) pairs per step: the InfoNCE negatives", min=2)
    lr: float = opt(5e-4, "peak learning rate (AdamW, warmup + cosine decay)", min=0.0)
    warmup_steps: int = opt(300, "linear warmup steps", min=0)
    weight_decay: float = opt(1e-2, "AdamW weight decay", min=0.0)
    grad_clip: float = opt(1.0, "global gradient-norm clip", min=0.0)
    eval_every: int = opt(500, "steps between retrieval evaluations on the valid split", min=1)
    eval_clips: int = opt(512, "at most this many valid clips in the retrieval pool", min=2)
    rvq_crops_per_clip: int = opt(4, "audio crops per train clip for fitting the RVQ", min=1)
    rvq_ema_passes: int = opt(3, "EMA passes over the embeddings after k-means", min=0)
    hard_negatives: bool = opt(True, "add each caption rewritten with its mode and with its "
                                     "tempo flipped as extra negatives of its clip (teaches "
                                     "what the words major/minor, slow/fast mean)")
    init: str = opt("", "start from these MuLan weights (a save_mulan folder; its tokenizer "
                        "and conditioning RVQ are used) instead of random; the model may add "
                        "the music-feature branches (model.music_features=true), which start "
                        "switched off (zero projection rows); a checkpoint in loop.workdir "
                        "still wins")
    tag_prob: float = opt(0.0, "fraction of training captions replaced by a short aspect list "
                               "of 1-3 of the clip's attributes ('slow, minor key'): teaches "
                               "what bare attribute words mean", min=0.0, max=1.0)
    label_weight: float = opt(0.0, "weight of the label-prompt loss: each clip's tempo bucket, "
                                   "mode and drums classified among short label phrases "
                                   "('slow tempo' / 'moderate' / 'brisk', drawn per step) by "
                                   "cosine at the contrastive temperature (UniCL); 0 = off",
                              min=0.0)
    rvq_text: bool = opt(False, "fit the conditioning RVQ on the train captions' text "
                                "embeddings as well as on audio (the generator is trained on "
                                "both and prompted with text; keeps both reconstructions "
                                "high when the modality gap is wide)")
    freeze_text: bool = opt(False, "train only the audio tower (locked text tower, text "
                                   "projection and conditioning RVQ, kept from init=): text "
                                   "embeddings and text conditioning tokens stay bit-identical, "
                                   "so generators trained on them stay valid")
    freeze_audio: bool = opt(False, "train only the text tower and its projection (locked "
                                    "audio tower, temperature and conditioning RVQ, kept from "
                                    "init=): audio embeddings and audio conditioning tokens "
                                    "stay bit-identical, so generators trained on them, and "
                                    "their copies of the RVQ codebooks, stay valid")
    twin_data: str = opt("", "roots (comma-separated) made by `musicrl data tempo-variants` / "
                             "`mode-variants` from data_root: "
                             "each step adds `twin_pairs` pairs of one passage at two tempi "
                             "or in two modes (their first crop, captioned each from its own "
                             "labels) to the batch, so each is the other's in-batch hard "
                             "negative and the embedding must hear the difference")
    twin_pairs: int = opt(0, "twin pairs added to each batch (needs twin_data)", min=0)
    music_lr_mult: float = opt(1.0, "learning-rate multiplier of the pitch-class and "
                                    "beat-period branches (model.music_features): their "
                                    "outputs are ~40× weaker in the embedding than the "
                                    "ConvNeXt pool's, docs/mulan.md \"Mode twins\"",
                               min=0.0, max=1000.0)
    keep_rvq: bool = opt(False, "keep the conditioning RVQ of init= instead of refitting it "
                                "(tokens stay on the codebooks the generator's stages carry)")
    music_standardize: int = opt(0, "before the first step, rescale the output layers of "
                                    "the pitch-class and beat-period branches so that every "
                                    "output dimension has mean 0 and std 1 over this many "
                                    "train crops (a data-dependent init; exact through the "
                                    "max over rotations): the branches then enter the "
                                    "projection ~10x louder than they left init=; 0 = off",
                                 min=0)


register_presets(MulanTrainConfig, {
    "tiny": MulanTrainConfig(
        model=presets_of(MulanConfig)["tiny"],
        loop=LoopConfig(workdir="runs/mulan-tiny", steps=20, log_every=5, ckpt_every=10),
        data_root="data/tiny", batch_size=4, lr=2e-3, warmup_steps=2, eval_every=10,
        eval_clips=16, rvq_crops_per_clip=4, rvq_ema_passes=2),
    "small": MulanTrainConfig(model=presets_of(MulanConfig)["small"]),
    "base": MulanTrainConfig(model=presets_of(MulanConfig)["base"],
                             loop=LoopConfig(workdir="runs/mulan-base", steps=100_000),
                             data_root="data/base", batch_size=256),
})


# The text tower and its projection; ``freeze_text`` trains everything else (the
# conditioning RVQ's codebooks are not parameters and are never touched by the optimizer),
# ``freeze_audio`` only these.
_TEXT_PATHS = nnx.Any(nnx.PathContains("text"), nnx.PathContains("text_proj"))
AUDIO_SIDE = nnx.All(nnx.Param, nnx.Not(_TEXT_PATHS))
TEXT_SIDE = nnx.All(nnx.Param, _TEXT_PATHS)


def trainable(cfg: MulanTrainConfig):
    """The parameter filter the optimizer updates."""
    return AUDIO_SIDE if cfg.freeze_text else TEXT_SIDE if cfg.freeze_audio else nnx.Param


def make_optimizer(model: Mulan, cfg: MulanTrainConfig) -> nnx.Optimizer:
    return adamw_cosine(model, lr=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.loop.steps,
                        weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip,
                        wrt=trainable(cfg), lr_mult=("music", cfg.music_lr_mult))


def _loss(model: Mulan, ids: jax.Array, mask: jax.Array, wav: jax.Array, neg=None,
          labels=None):
    return model.contrastive_loss(ids, mask, wav, neg, labels)


@nnx.jit(static_argnames="wrt")
def train_step(model: Mulan, optimizer: nnx.Optimizer, ids: jax.Array, mask: jax.Array,
               wav: jax.Array, neg=None, wrt=nnx.Param, labels=None) -> dict[str, jax.Array]:
    """One AdamW step on the parameters ``wrt`` selects (all of them by default)."""
    grad_fn = nnx.value_and_grad(_loss, argnums=nnx.DiffState(0, wrt), has_aux=True)
    (_, metrics), grads = grad_fn(model, ids, mask, wav, neg, labels)
    metrics["grad_norm"] = optax.tree.norm(grads)
    optimizer.update(model, grads)
    return metrics


def init_from(model: Mulan, init_model: Mulan) -> list[str]:
    """Copies ``init_model``'s parameters and conditioning codebooks into ``model``.

    The configs must match except that ``model`` may add the music-feature branches, their
    output normalization or the numeric text features: those keep their fresh
    initialization (the numeric projection is zero) and the new input rows of
    ``audio_proj`` start at zero, so a model grown by branches or numeric features
    computes exactly the embeddings of ``init_model`` until training moves them (added
    normalization does not: it rescales the branches' outputs from the first step, which
    is its purpose). Returns the names of the parameters that were not copied.
    """
    a, b = to_dict(model.cfg), to_dict(init_model.cfg)
    grown = {"music_features", "music_width"}
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    music_diff = [k for k in diff if k in grown]
    added = {"numeric_features", "music_norm"}   # switched on here, off in the init weights
    bad = [k for k in diff if k not in grown and not (k in added and a.get(k) and not b.get(k))]
    if bad or (b.get("music_features") and music_diff):
        raise ValueError(f"init: the weights were trained with another model config ({', '.join(diff)} "
                         "differ); pass the same model.* settings (only the music-feature "
                         "branches, their normalization or the numeric text features may "
                         "be added)")
    old = {p: v.get_value() for p, v in nnx.to_flat_state(nnx.state(init_model, nnx.Param))}
    items, fresh = [], []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        new = var.get_value()
        if path not in old:
            fresh.append("/".join(map(str, path)))
            continue
        src = old[path]
        if src.shape != new.shape:
            if path != ("audio_proj", "kernel") or src.shape[1:] != new.shape[1:]:
                raise ValueError(f"init: {'/'.join(map(str, path))} has shape {src.shape} in "
                                 f"the init weights, {new.shape} in the model")
            src = jnp.zeros_like(new).at[: src.shape[0]].set(src)
        items.append((path, var.copy(jnp.asarray(src, new.dtype))))
    nnx.update(model, nnx.from_flat_state(items))
    model.rvq.codebook[...] = init_model.rvq.codebook[...]
    return fresh


# ----------------------------------------------------------------------------
# Counterfactual captions (hard negatives)
# ----------------------------------------------------------------------------

def hard_negatives(captions: list[str], rng: np.random.Generator
                   ) -> tuple[list[str], np.ndarray]:
    """Two rewritten captions per caption (mode flipped, tempo flipped) and which exist.

    Returns ``(texts [2b], valid bool [2b])``; a missing rewrite is a placeholder (the
    caption itself) marked invalid, so the batch shape never changes.
    """
    texts, valid = [], []
    for c in captions:
        for alt in (flip_mode(c), flip_tempo(c, rng)):
            texts.append(alt if alt is not None else c)
            valid.append(alt is not None)
    return texts, np.asarray(valid)


def label_prompts(batch_labels: list[dict | None], rng: np.random.Generator
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One freshly worded phrase per (attribute, value) of ``LABEL_CLASSES``, the
    attribute index of each [c], and each clip's target column per attribute [b, g]
    (−1 where the clip lacks the label, e.g. imported clips)."""
    texts, group, column = [], [], {}
    for g, (attr, values) in enumerate(LABEL_CLASSES.items()):
        for v in values:
            column[attr, v] = len(texts)
            texts.append(label_phrase(attr, v, rng))
            group.append(g)
    target = np.full((len(batch_labels), len(LABEL_CLASSES)), -1, np.int32)
    for i, lb in enumerate(batch_labels):
        for g, attr in enumerate(LABEL_CLASSES):
            if lb and attr in lb:
                v = bool(lb[attr]) if attr == "drums" else lb[attr]
                target[i, g] = column.get((attr, v), -1)
    return texts, np.asarray(group, np.int32), target


# ----------------------------------------------------------------------------
# Twins (in-batch hard negatives that differ in tempo or mode alone)
# ----------------------------------------------------------------------------

def twin_groups(data_root: str, train_clips, twin_data: str) -> list[list[tuple]]:
    """Groups [(audio path, captions, labels), …] of a train clip and its variants, per
    variants root of ``twin_data`` (comma-separated: tempo and mode variants give groups of
    their own, so a pair differs in one attribute)."""
    from musicrl.data.variants import split_roots, variant_groups

    src = {c.id: c for c in train_clips}
    out: list[list[tuple]] = []
    for root in split_roots(twin_data):
        groups = [[(Path(data_root) / src[of].path, src[of].captions, dict(src[of].labels))]
                  + [(Path(root) / c.path, c.captions, dict(c.labels)) for c in vs if c.captions]
                  for of, vs in variant_groups(root).items() if of in src]
        groups = [g for g in groups if len(g) > 1]
        if not groups:
            raise ValueError(f"twin_data: {root} holds no variants of {data_root}'s train "
                             "clips; make them with `musicrl data tempo-variants` (or "
                             f"mode-variants) --source {data_root} --root {root}")
        out += groups
    return out


def twin_batch(groups: list[list[tuple]], pairs: int, n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, list[str], list[dict]]:
    """``pairs`` pairs (rows 2i, 2i+1) of two members of one group: the first ``n``
    samples of each (the same passage at two tempi or in two modes), a random phrasing of its own
    caption, its labels."""
    from musicrl.data.loader import read_crop

    wav, caps, labels = [], [], []
    for g in rng.integers(0, len(groups), pairs):
        for j in rng.choice(len(groups[g]), 2, replace=False):
            path, captions, lb = groups[g][j]
            wav.append(read_crop(path, n, None, offset=0)[0])
            caps.append(captions[int(rng.integers(len(captions)))])
            labels.append(lb)
    return np.stack(wav), caps, labels


# ----------------------------------------------------------------------------
# Retrieval
# ----------------------------------------------------------------------------

def retrieval_metrics(text_ne: np.ndarray, audio_ne: np.ndarray, ks: tuple[int, ...] = (1, 10)
                      ) -> dict[str, float]:
    """Recall@k of pair i (text i ↔ audio i) in both directions, with chance k / N."""
    sims = np.asarray(text_ne) @ np.asarray(audio_ne).T
    n = sims.shape[0]
    # rank of the true match = number of candidates scoring strictly higher
    t2a_rank = np.sum(sims > np.diag(sims)[:, None], axis=1)
    a2t_rank = np.sum(sims > np.diag(sims)[None, :], axis=0)
    out = {"pool": float(n)}
    for k in ks:
        out[f"t2a_r@{k}"] = float(np.mean(t2a_rank < k))
        out[f"a2t_r@{k}"] = float(np.mean(a2t_rank < k))
        out[f"chance_r@{k}"] = min(k, n) / n
    return out


def _fixed_crops(root: str, clips, n: int, seed: int, per_clip: int = 1) -> np.ndarray:
    from musicrl.data.loader import read_crop

    rng = np.random.default_rng(seed)
    return np.stack([read_crop(Path(root) / c.path, n, rng)[0]
                     for c in clips for _ in range(per_clip)])


def standardize_music_branches(model: Mulan, wav_bn: np.ndarray, batch: int = 32
                               ) -> dict[str, float]:
    """Folds a per-dimension standardization into the branches' output layers.

    Each branch ends in a linear layer (``chroma_out``, ``tempo_out``); the pitch-class
    branch then takes a max over the 12 rotations, which commutes with a positive scale
    and a shift. So rescaling those layers' columns by ``1/std`` and shifting their bias
    by ``-mean/std`` (both measured on ``wav_bn``) makes each output dimension of both
    branches zero-mean and unit-std over these crops. ``audio_proj`` is left as it is, so
    the branches' contribution to the embedding grows by the same factor. Returns the mean
    per-dimension std of each branch before.
    """
    music = model.audio.music
    if music is None:
        raise ValueError("music_standardize needs the music-feature branches "
                         "(model.music_features=true)")
    if music.pitch_out_norm is not None:
        raise ValueError("music_standardize and model.music_norm=true both rescale the "
                         "branches' outputs: choose one")
    cfg = model.cfg
    feats = []
    for i in range(0, len(wav_bn), batch):
        x = jnp.asarray(wav_bn[i:i + batch])
        feats.append(np.asarray(music(x, model.audio._mel(x), cfg.sample_rate, cfg.hop)))
    f = np.concatenate(feats).astype(np.float64)
    w = cfg.music_width
    before = {}
    for name, layer, part in (("pitch", music.chroma_out, f[:, :w]),
                              ("tempo", music.tempo_out, f[:, w:])):
        mean, std = part.mean(0), np.maximum(part.std(0), 1e-6)
        before[f"{name}_std_before"] = float(std.mean())
        kernel = np.asarray(layer.kernel[...], np.float64) / std
        bias = (np.asarray(layer.bias[...], np.float64) - mean) / std
        layer.kernel[...] = jnp.asarray(kernel, layer.kernel[...].dtype)
        layer.bias[...] = jnp.asarray(bias, layer.bias[...].dtype)
    return before


def _valid_pairs(cfg: MulanTrainConfig) -> tuple[np.ndarray, list[str]] | None:
    """Fixed crops [N, n] and first captions of up to ``eval_clips`` captioned valid clips."""
    from musicrl.data.manifest import load_clips

    clips = [c for c in load_clips(cfg.data_root, splits=["valid"]) if c.captions]
    clips = clips[: cfg.eval_clips]
    if len(clips) < 2:
        print("mulan: fewer than 2 captioned valid clips; retrieval is not evaluated")
        return None
    wav = _fixed_crops(cfg.data_root, clips, cfg.model.crop_samples, seed=0)
    return wav, [c.captions[0] for c in clips]


def _retrieval_hook(cfg: MulanTrainConfig, pairs: tuple[np.ndarray, list[str]]
                    ) -> tuple[Hook, dict[str, float]]:
    """The valid-split retrieval hook, and a dict holding its latest metrics."""
    wav, captions = pairs
    last: dict[str, float] = {}

    def fn(step: int, model: Mulan) -> dict[str, float]:
        a = embed_audio_batched(model, wav)
        t = embed_prompts_batched(model, captions)
        metrics = {f"valid/{k}": v for k, v in retrieval_metrics(t, a).items()}
        last.clear()
        last.update(metrics, step=step)
        return metrics

    return Hook(cfg.eval_every, fn), last


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------

def _tokenizer(cfg: MulanTrainConfig, root: Path, clips) -> tokenizers.Tokenizer:
    """The run's tokenizer: trained once on the train captions, kept in the work dir."""
    path = root / TOKENIZER_FILE
    if path.exists():
        tok = tokenizers.Tokenizer.from_file(str(path))
        if tok.get_vocab_size() > cfg.model.vocab_size:
            raise ValueError(
                f"{path} has {tok.get_vocab_size()} tokens, more than model.vocab_size="
                f"{cfg.model.vocab_size}: resume with the config the run was started with, "
                "or use a new loop.workdir")
        return tok
    captions = [cap for c in clips for cap in c.captions]
    if not captions:
        raise ValueError(f"the train split under {cfg.data_root} has no captions: MuLan needs "
                         "(clip, caption) pairs; rebuild the corpus or import captions")
    tok = train_text_tokenizer(captions, cfg.model.vocab_size)
    root.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return tok


def train_mulan(cfg: MulanTrainConfig, progress: bool = True,
                extra_hooks: tuple[Hook, ...] = ()) -> Path:
    """Trains (or resumes) MuLan, fits its conditioning RVQ; returns the weights folder."""
    from musicrl.data.loader import make_loader
    from musicrl.data.manifest import load_clips

    if cfg.freeze_text and cfg.freeze_audio:
        raise ValueError("freeze_text=true and freeze_audio=true leave nothing to train: "
                         "choose one")
    if (cfg.freeze_text or cfg.freeze_audio) and cfg.rvq_text:
        raise ValueError("freeze_text/freeze_audio keep the conditioning RVQ of init=; "
                         "rvq_text=true would refit it: choose one")
    if cfg.keep_rvq and (cfg.rvq_text or not cfg.init):
        raise ValueError("keep_rvq=true keeps the conditioning RVQ of init=: pass init= and "
                         "leave rvq_text=false")
    if bool(cfg.twin_pairs) != bool(cfg.twin_data):
        raise ValueError("twins need both twin_data=<a `musicrl data tempo-variants` (or mode-) "
                         "root> and twin_pairs > 0")
    root = Path(cfg.loop.workdir)
    train_clips = load_clips(cfg.data_root, splits=["train"])
    twins = twin_groups(cfg.data_root, train_clips, cfg.twin_data) if cfg.twin_data \
        else []
    if cfg.init and not (root / TOKENIZER_FILE).exists():
        init_dir = Path(cfg.init)
        init_dir = init_dir / "weights" if (init_dir / "weights" / TOKENIZER_FILE).exists() \
            else init_dir
        if not (init_dir / TOKENIZER_FILE).exists():
            raise ValueError(f"init={cfg.init}: not a MuLan weights folder (no {TOKENIZER_FILE})")
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(init_dir / TOKENIZER_FILE, root / TOKENIZER_FILE)
    tok = _tokenizer(cfg, root, train_clips)
    model = Mulan(cfg.model, tok, rngs=nnx.Rngs(cfg.loop.seed, vq=cfg.loop.seed + 1))
    if cfg.init:
        init_model, _ = load_mulan(cfg.init)
        fresh = init_from(model, init_model)
        print(f"initialized from {cfg.init}"
              + (f" ({len(fresh)} new parameters: {', '.join(fresh)})" if fresh else ""))
    elif cfg.freeze_text or cfg.freeze_audio:
        raise ValueError("freeze_text/freeze_audio keep one tower and the conditioning RVQ of "
                         "a trained model: pass init=<MuLan weights folder>")
    if cfg.music_standardize:   # a checkpoint in loop.workdir, if any, overwrites this
        pick = np.random.default_rng(cfg.loop.seed + 7).permutation(len(train_clips))
        crops = _fixed_crops(cfg.data_root, [train_clips[i] for i in
                                             np.sort(pick[: cfg.music_standardize])],
                             cfg.model.crop_samples, seed=cfg.loop.seed + 7)
        before = standardize_music_branches(model, crops)
        print("music branches standardized on "
              f"{len(crops)} train crops (per-dimension std before: "
              + ", ".join(f"{k.split('_')[0]} {v:.3f}" for k, v in before.items()) + ")")
    optimizer = make_optimizer(model, cfg)
    crop = cfg.model.crop_samples
    loader = make_loader(LoaderConfig(root=cfg.data_root, split="train",
                                      batch_size=cfg.batch_size,
                                      crop_seconds=crop / cfg.model.sample_rate,
                                      seed=cfg.loop.seed))
    print(f"mulan: {count_params(model) / 1e6:.2f} M parameters, {len(loader.clips)} training "
          f"clips, vocabulary {tok.get_vocab_size()}")

    wrt = trainable(cfg)

    def step_fn(model, optimizer, batch, step):
        rng = np.random.default_rng([cfg.loop.seed, 31, step])
        captions = [make_aspect_caption(lb, rng) if cfg.tag_prob and lb and rng.random() < cfg.tag_prob
                    else c for c, lb in zip(batch["caption"], batch["labels"], strict=True)]
        audio, labels_b = batch["audio"], list(batch["labels"])
        if twins:
            t_wav, t_caps, t_labels = twin_batch(twins, cfg.twin_pairs, crop, rng)
            t_caps = [make_aspect_caption(lb, rng) if cfg.tag_prob and rng.random() < cfg.tag_prob
                      else c for c, lb in zip(t_caps, t_labels, strict=True)]
            audio = np.concatenate([np.asarray(audio), t_wav])
            captions, labels_b = captions + t_caps, labels_b + t_labels
        ids, mask = model.tokenize(captions)
        neg = None
        if cfg.hard_negatives:
            texts, valid = hard_negatives(captions, rng)
            n_ids, n_mask = model.tokenize(texts)
            neg = (jnp.asarray(n_ids), jnp.asarray(n_mask), jnp.asarray(valid))
        labels = None
        if cfg.label_weight:
            texts, group, target = label_prompts(labels_b, rng)
            l_ids, l_mask = model.tokenize(texts)
            labels = (jnp.asarray(l_ids), jnp.asarray(l_mask), jnp.asarray(group),
                      jnp.asarray(target), jnp.float32(cfg.label_weight))
        return train_step(model, optimizer, jnp.asarray(ids), jnp.asarray(mask),
                          jnp.asarray(audio), neg, wrt=wrt, labels=labels)

    pairs = _valid_pairs(cfg)
    hook, last_valid = _retrieval_hook(cfg, pairs) if pairs else (None, {})
    t0 = time.time()
    final = run_loop(cfg.loop, model=model, optimizer=optimizer, batches=loader,
                     step_fn=step_fn, config=to_dict(cfg),
                     hooks=[*([hook] if hook else []), *extra_hooks],
                     items_per_step=cfg.batch_size, items_name="pairs", progress=progress,
                     desc="mulan")
    loader.close()
    out = root / "weights"
    if final < cfg.loop.steps:
        return out

    # Conditioning RVQ on audio embeddings of the training split.
    wav = _fixed_crops(cfg.data_root, train_clips, crop, seed=cfg.loop.seed,
                       per_clip=cfg.rvq_crops_per_clip)
    emb = embed_audio_batched(model, wav)
    if cfg.freeze_text or cfg.freeze_audio or cfg.keep_rvq:   # the codebooks of init= stay
        report = {"rvq_cosine_per_level": reconstruction_cosine(model, emb),
                  "rvq_kept_from": cfg.init, "rvq_embeddings": len(emb)}
    else:
        if len(emb) < cfg.model.rvq_codebook_size:
            raise ValueError(
                f"fitting the conditioning RVQ needs at least rvq_codebook_size="
                f"{cfg.model.rvq_codebook_size} embeddings, the train split gives {len(emb)}: "
                "raise rvq_crops_per_clip or lower model.rvq_codebook_size")
        fit_on = emb
        if cfg.rvq_text:
            fit_on = np.concatenate([emb, embed_prompts_batched(
                model, [cap for c in train_clips for cap in c.captions])])
        rvq = fit_conditioning_rvq(model, fit_on, ema_passes=cfg.rvq_ema_passes,
                                   seed=cfg.loop.seed)
        report = {"rvq_cosine_per_level": reconstruction_cosine(model, emb),
                  "rvq_cosine_kmeans": rvq["kmeans"], "rvq_embeddings": len(emb),
                  "rvq_fitted_on": "audio + captions" if cfg.rvq_text else "audio"}
    if hook is not None:
        if last_valid.get("step") != final:  # resumed after the end: evaluate once more
            hook.fn(final, model)
        report["valid"] = dict(last_valid)
        # Held out: valid audio, and valid captions (text embeddings are what the RVQ
        # quantizes at inference; the gap between the two modalities shows here).
        report["rvq_cosine_valid_audio"] = reconstruction_cosine(
            model, embed_audio_batched(model, pairs[0]))
        report["rvq_cosine_valid_text"] = reconstruction_cosine(
            model, embed_prompts_batched(model, pairs[1]))
    held_out = (f"; valid audio {report['rvq_cosine_valid_audio'][-1]:.4f}, valid text "
                f"{report['rvq_cosine_valid_text'][-1]:.4f}" if hook is not None else "")
    print(f"conditioning RVQ: mean cos(embedding, {cfg.model.rvq_levels}-token reconstruction) "
          f"= {report['rvq_cosine_per_level'][-1]:.4f} on {len(emb)} train audio embeddings"
          f"{held_out}")
    write_text_atomic(root / "report.json", json.dumps(report, indent=2) + "\n")
    save_mulan(out, model, meta={
        "train_config": to_dict(cfg), "steps": final, "report": report,
        "train_seconds_this_session": round(time.time() - t0, 1),
        "params": count_params(model)})
    print(f"inference weights: {out}")
    return out
