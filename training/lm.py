"""``musicrl train lm --stage semantic|acoustic``: pretraining the generator's stages.

Loss (DESIGN §7): token cross-entropy of the stage's pattern (semantic tokens
for stage S; the first K codec levels in the delay pattern for stage A), with
the MuLan prefix dropped for ``cond_dropout`` of the examples so that one
model is also unconditional (CFG). MuLan tokens are the *audio* tokens of each
training clip (:func:`musicrl.lm.data.corpus_mulan_tokens`).

Exact resume: the data stream is a pure function of (seed, batch index), the
dropout mask of step i a pure function of (seed, i), and the shared loop
(:mod:`training.loop`) restores model, optimizer and batch index. A hook logs
the loss on fixed valid batches, conditional and unconditional (their gap is
how much the model uses the text). Inference weights go to
``<workdir>/weights`` (``musicrl.lm.save_stage``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from musicrl.config import opt, presets_of, register_presets, to_dict
from musicrl.lm.stages import StageConfig, StageLM, prefix_contrast_loss, stage_loss
from training.loop import Hook, LoopConfig, adamw_cosine, run_loop

__all__ = ["LMTrainConfig", "train_lm", "train_step"]


@dataclasses.dataclass(frozen=True)
class LMTrainConfig:
    model: StageConfig = StageConfig()
    loop: LoopConfig = LoopConfig(workdir="runs/lm-semantic-small", steps=1_500, log_every=25,
                                  ckpt_every=250)
    data_root: str = opt("data/small", "corpus (musicrl data build)")
    tokens: str = opt("", "token cache (musicrl tokenize); empty = <data_root>/tokens")
    extra_data: str = opt("", "corpus roots (comma-separated) whose clips join the *training* "
                              "stream (e.g. `musicrl data tempo-variants`, `mode-variants`; "
                              "each one's token cache is <root>/tokens, made by the same "
                              "tokenizers); valid batches stay on data_root")
    mulan: str = opt("assets/small/mulan", "MuLan weights for the conditioning tokens")
    seconds: float = opt(10.0, "seconds per training crop", min=0.2, max=60.0)
    batch_size: int = opt(16, "crops per step", min=1)
    lr: float = opt(1e-3, "peak learning rate (AdamW, warmup + cosine decay)", min=0.0)
    warmup_steps: int = opt(100, "linear warmup steps", min=0)
    weight_decay: float = opt(0.05, "AdamW weight decay", min=0.0)
    grad_clip: float = opt(1.0, "global gradient-norm clip", min=0.0)
    eval_every: int = opt(250, "steps between valid-loss evaluations", min=1)
    eval_batches: int = opt(4, "fixed valid batches per evaluation", min=1)
    text_prob: float = opt(0.5, "fraction of training examples conditioned on the MuLan tokens "
                                "of one of their captions' text embeddings instead of their "
                                "audio's (what inference uses)", min=0.0, max=1.0)
    early_seconds: float = opt(0.0, "the opening seconds of each crop whose tokens count "
                                     "`early_weight` times in the loss (and whose valid loss "
                                     "is logged apart): where the stage chooses tempo and "
                                     "groove from its prefix", min=0.0, max=60.0)
    early_weight: float = opt(1.0, "weight of the opening tokens (`early_seconds`) in the "
                                   "training loss; 1 = plain mean", min=0.0, max=100.0)
    input_noise: float = opt(0.0, "probability of replacing each teacher-forced input token "
                                  "by a random code (targets unchanged), so that the stage "
                                  "relies less on copying its history", min=0.0, max=0.9)
    twin_pairs: int = opt(0, "pairs of tempo twins (a train clip and its `extra_data` tempo "
                             "variants: one passage at two tempi) per step for the "
                             "prefix-contrast loss (stage S only); 0 = off", min=0)
    twin_seconds: float = opt(4.0, "seconds from the start of each twin scored by the "
                                   "prefix-contrast loss", min=0.2, max=60.0)
    contrast_weight: float = opt(1.0, "weight of the prefix-contrast loss "
                                      "(musicrl.lm.stages.prefix_contrast_loss)", min=0.0)
    contrast_beta: float = opt(1.0, "β of the prefix-contrast loss: −log σ(β Δ), Δ the "
                                    "summed log-likelihood ratio of own vs twin's prefix",
                               min=0.0)
    keep_best: bool = opt(True, "export the weights of the evaluation with the lowest valid "
                                "loss (text-conditioned), not the last step's")
    init: str = opt("", "start from these stage weights (e.g. assets/small/lm-semantic) "
                        "instead of random; a checkpoint in loop.workdir still wins")

    @property
    def token_dir(self) -> str:
        return self.tokens or str(Path(self.data_root) / "tokens")


_small_s = presets_of(StageConfig)["small"]
_small_a = presets_of(StageConfig)["small-acoustic"]
register_presets(LMTrainConfig, {
    "tiny": LMTrainConfig(
        model=presets_of(StageConfig)["tiny"],
        loop=LoopConfig(workdir="runs/lm-semantic-tiny", steps=6, log_every=2, ckpt_every=3),
        data_root="data/tiny", mulan="runs/mulan-tiny/weights", seconds=1.0, batch_size=2,
        warmup_steps=1, eval_every=3, eval_batches=1),
    "tiny-acoustic": LMTrainConfig(
        model=presets_of(StageConfig)["tiny-acoustic"],
        loop=LoopConfig(workdir="runs/lm-acoustic-tiny", steps=6, log_every=2, ckpt_every=3),
        data_root="data/tiny", mulan="runs/mulan-tiny/weights", seconds=1.0, batch_size=2,
        warmup_steps=1, eval_every=3, eval_batches=1),
    "small": LMTrainConfig(model=_small_s),
    "small-acoustic": LMTrainConfig(
        model=_small_a,
        loop=LoopConfig(workdir="runs/lm-acoustic-small", steps=1_500, log_every=25,
                        ckpt_every=250),
        batch_size=8),
})


def make_optimizer(model: StageLM, cfg: LMTrainConfig) -> nnx.Optimizer:
    return adamw_cosine(model, lr=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.loop.steps,
                        weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip, b2=0.98)


def _split(cfg: StageConfig, batch: dict) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """(mulan [b, m], codes [b, t, k], cond [b, s] | None) of a token batch."""
    mulan = jnp.asarray(batch["mulan"])[:, :cfg.mulan_levels]
    if cfg.stage == "semantic":
        return mulan, jnp.asarray(batch["semantic"])[..., None], None
    return mulan, jnp.asarray(batch["acoustic"]), jnp.asarray(batch["semantic"])


@functools.partial(nnx.jit, static_argnames=("early_frames", "early_weight", "input_noise",
                                             "contrast_weight", "contrast_beta"))
def train_step(model: StageLM, optimizer: nnx.Optimizer, mulan, codes, cond, drop, dropout_key,
               early_frames: int = 0, early_weight: float = 1.0, input_noise: float = 0.0,
               twin_mulan=None, twin_codes=None, contrast_weight: float = 1.0,
               contrast_beta: float = 1.0):
    def loss_fn(m):
        obj, met = stage_loss(m, mulan, codes, cond, drop, dropout_key,
                              early_frames=early_frames, early_weight=early_weight,
                              input_noise=input_noise,
                              noise_key=jax.random.fold_in(dropout_key, 1))
        if twin_codes is not None:
            c_loss, c_met = prefix_contrast_loss(m, twin_mulan, twin_codes, contrast_beta,
                                                 jax.random.fold_in(dropout_key, 2))
            obj = obj + contrast_weight * c_loss
            met = {**met, **c_met}
        return obj, met

    (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    metrics["grad_norm"] = optax.tree.norm(grads)
    optimizer.update(model, grads)
    return metrics


@functools.partial(nnx.jit, static_argnames=("early_frames",))
def _eval_loss(model: StageLM, mulan, codes, cond, drop, early_frames: int = 0):
    return stage_loss(model, mulan, codes, cond, drop, early_frames=early_frames)[1]


def _early_frames(cfg: LMTrainConfig) -> int:
    """Frames of the stage's own stream in ``cfg.early_seconds``."""
    return int(round(cfg.early_seconds * cfg.model.frame_rate))


def _copy_mulan_codebook(model: StageLM, mulan_dir: str) -> None:
    """``mulan_embed=codebook``: the stage embeds tokens through the RVQ of the MuLan that
    makes them, so copy it in (frozen; saved with the stage's weights)."""
    from musicrl.lm.data import LMDataError
    from musicrl.mulan import load_mulan

    mulan, _ = load_mulan(mulan_dir)
    try:
        model.set_mulan_codebook(mulan.rvq.codebook[...])
    except ValueError as e:
        raise LMDataError(f"{mulan_dir}: {e}") from None
    print(f"MuLan RVQ codebooks of {mulan_dir} copied into the stage (mulan_embed=codebook)")


def drop_mask(seed: int, step: int, batch: int, p: float) -> jax.Array:
    """The conditioning-dropout mask of a step: a pure function of (seed, step)."""
    key = jax.random.fold_in(jax.random.key(seed + 7919), step)
    return jax.random.bernoulli(key, p, (batch,))


def _check_same_tokenizers(a: str, b: str) -> None:
    """Two token caches can share a training stream only if the same tokenizers made them."""
    from musicrl.data.tokens import TOKENS_INDEX
    from musicrl.lm.data import LMDataError

    ids = [json.loads((Path(d) / TOKENS_INDEX).read_text())["identity"] for d in (a, b)]
    keys = ("codec", "semantic", "num_levels")
    if [{k: i.get(k) for k in keys} for i in ids] != [{k: ids[0].get(k) for k in keys}] * 2:
        raise LMDataError(f"the token caches {a} and {b} were made by different tokenizers "
                          f"({ {k: ids[0].get(k) for k in keys} } vs "
                          f"{ {k: ids[1].get(k) for k in keys} }): re-run `musicrl tokenize` "
                          "on the extra root with the same --codec and --semantic")


def load_stage_data(cfg: LMTrainConfig, split: str, seed: int, batch_size: int,
                    progress: bool = True, text_prob: float | None = None):
    """TokenBatches of a split (MuLan tokens computed and cached on first use)."""
    from musicrl.data.tokens import load_tokens
    from musicrl.data.variants import split_roots
    from musicrl.lm.data import (
        LMDataError,
        TokenBatches,
        corpus_mulan_text_tokens,
        corpus_mulan_tokens,
    )

    text_prob = cfg.text_prob if text_prob is None else text_prob
    sources = [(cfg.data_root, cfg.token_dir)]
    twin = split == "train" and cfg.twin_pairs > 0
    if twin and (cfg.model.stage != "semantic" or not cfg.extra_data):
        raise LMDataError("twin_pairs > 0 (the prefix-contrast loss) needs stage=semantic and "
                          "extra_data=<a root made by `musicrl data tempo-variants`>")
    extra = split_roots(cfg.extra_data)
    if split == "train":
        sources += [(r, str(Path(r) / "tokens")) for r in extra]
    tokens: dict = {}
    mulan: dict = {}
    mulan_text: dict | None = {} if text_prob > 0 else None
    for root, token_dir in sources:
        part = load_tokens(token_dir, split=split)
        if not part:
            raise LMDataError(f"no {split} clips in the token cache {token_dir}: run "
                              f"`musicrl tokenize --root {root}`")
        clash = set(part) & set(tokens)
        if clash:
            raise LMDataError(f"{root} repeats clip ids of {cfg.data_root} (e.g. "
                              f"{sorted(clash)[0]}): extra_data must be another corpus")
        if token_dir != cfg.token_dir:
            _check_same_tokenizers(cfg.token_dir, token_dir)
        tokens.update(part)
        mulan.update(corpus_mulan_tokens(root, sorted(part), cfg.mulan, token_dir,
                                         progress=progress))
        if mulan_text is not None:
            mulan_text.update(corpus_mulan_text_tokens(root, sorted(part), cfg.mulan, token_dir,
                                                       progress=progress))
    m = cfg.model
    top_s = max(int(s.max()) for s, _ in tokens.values())
    top_a = max(int(a[:, :m.levels].max()) for _, a in tokens.values())
    sem_vocab = m.vocab if m.stage == "semantic" else m.cond_vocab
    if top_s >= sem_vocab or (m.stage == "acoustic" and top_a >= m.vocab):
        raise LMDataError(
            f"the token cache {cfg.token_dir} holds ids up to {top_s} (semantic) / {top_a} "
            f"(acoustic) but the model's vocabularies are {sem_vocab} / {m.vocab}: set "
            "model.vocab / model.cond_vocab to the tokenizers' sizes")
    top_m = max(int(v.max()) for v in [*mulan.values(), *(mulan_text or {}).values()])
    if top_m >= m.mulan_vocab:
        raise LMDataError(f"MuLan tokens reach {top_m} but model.mulan_vocab={m.mulan_vocab}")
    return TokenBatches(tokens, mulan, batch_size=batch_size, seconds=cfg.seconds,
                        levels=m.levels if m.stage == "acoustic" else 1,
                        semantic_rate=m.frame_rate / (m.cond_ratio if m.stage == "acoustic"
                                                      else 1),
                        acoustic_rate=m.frame_rate * (1 if m.stage == "acoustic"
                                                      else m.cond_ratio),
                        seed=seed, mulan_text=mulan_text, text_prob=text_prob,
                        twins=[g for r in extra for g in tempo_twins(r)] if twin else None,
                        twin_pairs=cfg.twin_pairs if twin else 0,
                        twin_seconds=cfg.twin_seconds)


def tempo_twins(root: str) -> list[tuple[str, ...]]:
    """Groups (source clip, its variants…) of a `musicrl data tempo-variants` (or
    mode-variants) root."""
    from musicrl.data.variants import variant_groups

    return [(src, *(c.id for c in vs)) for src, vs in variant_groups(root).items()]


def _valid_hook(cfg: LMTrainConfig, valid, best_dir: Path | None = None) -> Hook:
    """Valid loss, conditional and unconditional, on fixed batches; the valid stream is
    conditioned on caption-text tokens (what inference sees). With ``best_dir``, the
    weights of the best conditional loss so far are saved there."""
    batches = [valid.batch(i) for i in range(cfg.eval_batches)]
    best = {"loss": float("inf")}
    if best_dir is not None and (best_dir / "meta.json").exists():  # resumed run
        best["loss"] = float(json.loads((best_dir / "meta.json").read_text())
                             .get("valid_loss_cond", float("inf")))

    def fn(step: int, model: StageLM) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for b in batches:
            mulan, codes, cond = _split(cfg.model, b)
            for name, drop in (("cond", False), ("uncond", True)):
                met = _eval_loss(model, mulan, codes, cond, jnp.full((len(mulan),), drop),
                                 early_frames=_early_frames(cfg))
                out.setdefault(f"valid/loss_{name}", []).append(float(met["loss"]))
                if "loss_early" in met:
                    out.setdefault(f"valid/loss_early_{name}", []).append(
                        float(met["loss_early"]))
                out.setdefault(f"valid/accuracy_{name}", []).append(float(met["accuracy"]))
        res = {k: float(np.mean(v)) for k, v in out.items()}
        if best_dir is not None and res["valid/loss_cond"] < best["loss"]:
            from musicrl.codec.model import count_params
            from musicrl.lm.io import save_stage

            best["loss"] = res["valid/loss_cond"]
            save_stage(best_dir, model, meta={
                "train_config": to_dict(cfg), "steps": step, "params": count_params(model),
                "valid_loss_cond": res["valid/loss_cond"],
                "valid_loss_uncond": res["valid/loss_uncond"]})
        res["valid/best_loss_cond"] = best["loss"]
        return res

    return Hook(cfg.eval_every, fn)


def train_lm(cfg: LMTrainConfig, progress: bool = True,
             extra_hooks: tuple[Hook, ...] = ()) -> Path:
    """Trains (or resumes) one stage; returns its inference weights folder."""
    from musicrl.codec.model import count_params
    from musicrl.lm.io import save_stage

    m = cfg.model
    train = load_stage_data(cfg, "train", cfg.loop.seed, cfg.batch_size, progress)
    valid = load_stage_data(cfg, "valid", 12345, cfg.batch_size, progress,
                            text_prob=1.0 if cfg.text_prob > 0 else 0.0)
    model = StageLM(cfg.model, rngs=nnx.Rngs(cfg.loop.seed))
    if cfg.init:
        from musicrl.checkpoint import load_weights
        from musicrl.lm.io import load_stage

        _, meta = load_stage(cfg.init, m.stage)       # validates kind and config
        load_weights(Path(cfg.init) if (Path(cfg.init) / "meta.json").exists()
                     else Path(cfg.init) / "weights", model)
        print(f"initialized from {cfg.init} ({meta.get('steps', '?')} steps)")
    if m.mulan_embed == "codebook":
        _copy_mulan_codebook(model, cfg.mulan)
    optimizer = make_optimizer(model, cfg)
    tokens_per_step = cfg.batch_size * (train.t_len if m.stage == "acoustic" else train.s_len) \
        * (m.levels if m.stage == "acoustic" else 1)
    print(f"lm-{m.stage} ({m.backbone.kind}): {count_params(model) / 1e6:.2f} M parameters, "
          f"{len(train)} training clips, {tokens_per_step} target tokens per step")

    def step_fn(model, optimizer, batch, step):
        mulan, codes, cond = _split(m, batch)
        drop = drop_mask(cfg.loop.seed, step, len(mulan), m.cond_dropout)
        dkey = jax.random.fold_in(jax.random.key(cfg.loop.seed + 104_729), step)
        twin = {}
        if "twin_semantic" in batch:
            twin = dict(twin_mulan=jnp.asarray(batch["twin_mulan"])[:, :m.mulan_levels],
                        twin_codes=jnp.asarray(batch["twin_semantic"])[..., None],
                        contrast_weight=cfg.contrast_weight, contrast_beta=cfg.contrast_beta)
        return train_step(model, optimizer, mulan, codes, cond, drop, dkey,
                          early_frames=_early_frames(cfg), early_weight=cfg.early_weight,
                          input_noise=cfg.input_noise, **twin)

    t0 = time.time()
    best_dir = Path(cfg.loop.workdir) / "best" if cfg.keep_best else None
    final = run_loop(cfg.loop, model=model, optimizer=optimizer, batches=train,
                     step_fn=step_fn, config=to_dict(cfg),
                     hooks=[_valid_hook(cfg, valid, best_dir), *extra_hooks],
                     items_per_step=tokens_per_step, items_name="tokens", progress=progress,
                     desc=f"lm-{m.stage}")
    out = Path(cfg.loop.workdir) / "weights"
    if final >= cfg.loop.steps:
        meta = {"train_config": to_dict(cfg), "steps": final,
                "train_seconds_this_session": round(time.time() - t0, 1),
                "params": count_params(model)}
        if best_dir is not None and (best_dir / "meta.json").exists():
            from musicrl.checkpoint import load_weights

            best = json.loads((best_dir / "meta.json").read_text())
            load_weights(best_dir, model)
            meta.update(steps=best["steps"], steps_run=final,
                        valid_loss_cond=best["valid_loss_cond"],
                        valid_loss_uncond=best["valid_loss_uncond"])
            print(f"best valid loss {best['valid_loss_cond']:.4f} at step {best['steps']} "
                  f"(of {final}): exporting those weights")
        save_stage(out, model, meta=meta)
        print(f"inference weights: {out}")
    return out
