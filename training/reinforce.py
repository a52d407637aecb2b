"""``musicrl train rl``: KL-regularized REINFORCE on stage S (DESIGN §9, "MusicRL").

The policy π_θ is a semantic stage (stage S), the reference π_ref a frozen copy of it.
Each step draws ``prompts`` train clips and one of their caption phrasings (their
MuLan *text* tokens: what the stage is prompted with at inference), samples
``samples`` continuations of ``seconds`` per prompt from π_θ (temperature 1, no
guidance: the policy itself), scores them with the reward, and takes one AdamW step on

    L(θ) = −mean_i[(R_i − b_i) · log π_θ(y_i | x_i) / S] + α · mean_i[KL_i / S],
    KL_i = Σ_positions Σ_v π_θ(v | ·) (log π_θ(v | ·) − log π_ref(v | ·)),

with S the tokens per sample (both terms per token, so α means the same at any length),
the KL taken in full over the vocabulary at every position (not a single-sample
estimate), and b_i the leave-one-out mean reward of the other samples of the same prompt
(RLOO, Ahmadian et al. 2024). The sampled tokens get no gradient (the score-function
estimator).

The reward here is :class:`rewards.tempo.TempoReward` — P(the semantic stream's tempo is
within 8 % of the prompt's BPM), read from the tokens stage S writes, which is where
the generator's tempo is chosen (docs/generator.md "Where tempo is lost") — optionally
restricted to clips with drums (``drums_only``), whose tempo the evaluation's beat
tracker reads. The loss (:func:`reinforce_loss`) is independent of the reward: a later
reward (MuLan score, quality, a preference model) needs only another scoring callable.

Prompts and samples are a pure function of (seed, step), so a resumed run repeats
exactly the steps an uninterrupted one would. A hook samples ``valid_samples`` clips per
valid clip with drums (``valid_clips``; caption phrasings rotate) and logs the reward's
hit rate (argmax BPM within 8 %) beside permutation chance, the Spearman correlation of
the samples' BPM with the prompts' (0 when the stage ignores the prompt's tempo, whatever
its hit rate) and the spread of the samples' log BPM (a policy that collapses to one
tempo has none). The exported weights are a stage-S folder (``<workdir>/weights``) that
replaces ``lm-semantic`` in a bundle.

Dimension legend: ``b`` rows (prompts × samples), ``s`` frames, ``n`` tokens per step,
``v`` vocabulary, ``m`` MuLan levels.
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

from musicrl.config import opt, register_presets, to_dict
from musicrl.errors import MusicrlError
from musicrl.lm.stages import StageLM, teacher_forcing
from training.loop import Hook, LastEval, LoopConfig, SeededBatches, adamw_cosine, run_loop

__all__ = ["RLConfig", "RLError", "reinforce_loss", "rloo_advantages", "reference_logp",
           "PromptBatches", "train_rl"]


class RLError(MusicrlError, ValueError):
    """RL finetuning could not start; the message says why."""


@dataclasses.dataclass(frozen=True)
class RLConfig:
    loop: LoopConfig = LoopConfig(workdir="runs/rl-tempo", steps=150, log_every=5,
                                  ckpt_every=25)
    bundle: str = opt("assets/small", "generator bundle: its mulan/ makes the prompts' tokens")
    init: str = opt("", "stage S weights to start from (and anchor the KL to); default "
                        "<bundle>/lm-semantic")
    tempo: str = opt("assets/small/tempo", "tempo reward model (`musicrl train tempo`)")
    data_root: str = opt("data/small", "corpus whose train captions are the prompts")
    extra_data: str = opt("", "more roots (comma-separated) of prompts, e.g. "
                              "data/small-tempo (the same passages at other tempi)")
    reward_width: float = opt(0.0, "0: reward = P(within 8 % of the BPM); > 0: the smooth "
                                   "closeness, a Gaussian of this width in log BPM", min=0.0,
                              max=1.0)
    drums_only: bool = opt(True, "prompt only with clips that have drums (whose tempo the "
                                 "evaluation's beat tracker reads)")
    prompts: int = opt(8, "prompts per step", min=1)
    samples: int = opt(4, "samples per prompt (≥ 2: the leave-one-out baseline)", min=2)
    seconds: float = opt(4.0, "seconds of semantic tokens sampled per row", min=0.5,
                         max=30.0)
    kl_coef: float = opt(0.05, "α: weight of KL(π_θ ‖ π_ref) per token", min=0.0)
    lr: float = opt(3e-5, "peak learning rate (AdamW, warmup + cosine decay)", min=0.0)
    warmup_steps: int = opt(10, "linear warmup steps", min=0)
    weight_decay: float = opt(0.0, "AdamW weight decay", min=0.0)
    grad_clip: float = opt(1.0, "global gradient-norm clip", min=0.0)
    eval_every: int = opt(25, "steps between valid evaluations", min=1)
    valid_clips: int = opt(110, "valid clips sampled by the eval hook (0: none)", min=0)
    valid_samples: int = opt(2, "samples per valid clip (its caption phrasings rotate)", min=1)


register_presets(RLConfig, {
    "tiny": RLConfig(loop=LoopConfig(workdir="runs/rl-tiny", steps=4, log_every=1,
                                     ckpt_every=2),
                     data_root="data/tiny", prompts=2, samples=2, seconds=2.0, eval_every=2,
                     valid_clips=4),
    "small": RLConfig(),
})


# ----------------------------------------------------------------------------------------
# The objective
# ----------------------------------------------------------------------------------------

def rloo_advantages(rewards_ps: np.ndarray | jax.Array) -> jax.Array:
    """Leave-one-out advantages [p, s]: each reward minus the mean of its prompt's others."""
    r = jnp.asarray(rewards_ps, jnp.float32)
    k = r.shape[1]
    if k < 2:
        raise RLError("the leave-one-out baseline needs ≥ 2 samples per prompt")
    return r - (jnp.sum(r, axis=1, keepdims=True) - r) / (k - 1)


def _logp(model: StageLM, mulan_bm: jax.Array, codes_btk: jax.Array):
    cfg = model.cfg
    inputs, targets, layout, cond = teacher_forcing(cfg, codes_btk, None)
    logits = model(mulan_bm, inputs, layout, cond, jnp.zeros((mulan_bm.shape[0],), bool), None)
    w = jnp.broadcast_to(jnp.asarray(layout.valid)[None], targets.shape).astype(jnp.float32)
    return jax.nn.log_softmax(logits, axis=-1), jnp.minimum(targets, cfg.vocab - 1), w


@nnx.jit
def reference_logp(model: StageLM, mulan_bm: jax.Array, codes_btk: jax.Array) -> jax.Array:
    """log π_ref over the vocabulary at every slot, [b, s, n, v] (no gradient)."""
    return _logp(model, mulan_bm, codes_btk)[0]


def reinforce_loss(model: StageLM, mulan_bm: jax.Array, codes_btk: jax.Array,
                   adv_b: jax.Array, ref_logp: jax.Array, kl_coef: float
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """KL-regularized REINFORCE on sampled codes (module docstring), per token.

    Returns ``(loss, metrics)``: ``pg`` the policy-gradient term, ``kl`` the mean full
    KL(π_θ ‖ π_ref) per token, ``logp`` the mean log π_θ per token of the samples.
    """
    logp, targets, w = _logp(model, mulan_bm, codes_btk)                    # [b, s, n, v]
    slots = jnp.sum(w, axis=(1, 2))
    tok = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    seq = jnp.sum(tok * w, axis=(1, 2)) / slots                             # [b]
    kl_tok = jnp.sum(jnp.exp(logp) * (logp - jax.lax.stop_gradient(ref_logp)), axis=-1)
    kl = jnp.sum(kl_tok * w, axis=(1, 2)) / slots                           # [b]
    pg = -jnp.mean(jax.lax.stop_gradient(adv_b) * seq)
    loss = pg + kl_coef * jnp.mean(kl)
    return loss, {"loss": loss, "pg": pg, "kl": jnp.mean(kl), "logp": jnp.mean(seq)}


@nnx.jit(static_argnames=("kl_coef",))
def train_step(model: StageLM, optimizer: nnx.Optimizer, mulan_bm: jax.Array,
               codes_btk: jax.Array, adv_b: jax.Array, ref_logp: jax.Array, kl_coef: float
               ) -> dict[str, jax.Array]:
    (_, metrics), grads = nnx.value_and_grad(reinforce_loss, has_aux=True)(
        model, mulan_bm, codes_btk, adv_b, ref_logp, kl_coef)
    metrics["grad_norm"] = optax.tree.norm(grads)
    optimizer.update(model, grads)
    return metrics


# ----------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------

def prompt_pool(roots: list[str], split: str, mulan_dir: str, drums_only: bool,
                progress: bool = True) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(clip ids, MuLan text tokens int32 [N, c, m] of their captions, BPM [N]) of a split."""
    from musicrl.data.manifest import load_clips
    from musicrl.lm.data import corpus_mulan_text_tokens

    ids, toks, bpm = [], [], []
    for root in roots:
        clips = [c for c in load_clips(root, splits=[split]) if c.captions and c.labels
                 and c.labels.get("bpm") and (c.labels.get("drums") or not drums_only)]
        if not clips:
            continue
        tt = corpus_mulan_text_tokens(root, [c.id for c in clips], mulan_dir,
                                      Path(root) / "tokens", progress=progress)
        for c in clips:
            ids.append(c.id)
            toks.append(tt[c.id])
            bpm.append(float(c.labels["bpm"]))
    if not ids:
        raise RLError(f"no {split} clip under {', '.join(roots)} has captions and a bpm label"
                      + (" and drums" if drums_only else "") + ": prompts come from the "
                      "bundled corpus (`musicrl data build`)")
    return ids, np.stack(toks).astype(np.int32), np.asarray(bpm, np.float32)


class PromptBatches(SeededBatches):
    """Step i: ``prompts`` clips and one caption each, a pure function of (seed, i)."""

    def __init__(self, tokens_ncm: np.ndarray, bpm: np.ndarray, prompts: int, seed: int):
        self.tokens, self.bpm, self.prompts, self.seed = tokens_ncm, bpm, prompts, seed

    def make(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        pick = rng.integers(0, len(self.tokens), self.prompts)
        row = rng.integers(0, self.tokens.shape[1], self.prompts)
        return {"mulan": self.tokens[pick, row], "bpm": self.bpm[pick]}


def valid_prompts(root: str, mulan_dir: str, clips: int, samples: int, levels: int,
                  drums_only: bool = True, progress: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MuLan text tokens [r, m], BPM [r], clip index [r]) of ``samples`` rows for each of
    the first ``clips`` valid clips, caption phrasings rotating over the rows."""
    _, tok, bpm = prompt_pool([root], "valid", mulan_dir, drums_only, progress)
    n = min(clips, len(tok))
    rows = np.arange(n * samples)
    clip = rows % n
    return tok[clip, rows % tok.shape[1], :levels], bpm[clip], clip


def sampled_tempo_metrics(model: StageLM, reward, tokens_rm: np.ndarray, bpm: np.ndarray,
                          clip: np.ndarray, frames: int, batch: int = 64, seed: int = 12_345,
                          guidance: float = 1.0) -> dict[str, float]:
    """Samples ``frames`` of stage S per row (temperature 1, CFG ``guidance``; 1 = the
    policy itself) and reads their
    tempo with the tempo model: ``valid/hit`` (argmax BPM within 8 % of the row's),
    ``valid/chance`` (the same BPMs against other clips' targets), ``valid/reward``,
    ``valid/spearman`` (samples' BPM vs the prompts': 0 when the prompt's tempo is
    ignored, whatever the hit rate) and ``valid/bpm_spread`` (std of the samples' log BPM:
    0 for a policy collapsed to one tempo)."""
    from scipy.stats import spearmanr

    from musicrl.sampling import Sampler, sample_stage

    preds, rs = [], []
    for i in range(0, len(tokens_rm), batch):
        key = jax.random.fold_in(jax.random.key(seed), i)
        c = np.asarray(sample_stage(model, jnp.asarray(tokens_rm[i:i + batch]), frames,
                                    key=key, sampler=Sampler(), guidance=guidance)[..., 0])
        preds.append(reward.bpm(c))
        rs.append(reward(bpm[i:i + batch], c))
    pred = np.concatenate(preds)
    hit = np.abs(pred[:, None] / bpm[None, :] - 1.0) <= 0.08
    return {"valid/hit": float(np.mean(np.diag(hit))),
            "valid/chance": float(np.mean(hit[clip[:, None] != clip[None, :]])),
            "valid/reward": float(np.mean(np.concatenate(rs))),
            "valid/spearman": float(spearmanr(pred, bpm).statistic),
            "valid/bpm_spread": float(np.std(np.log(pred)))}


# ----------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------

def train_rl(cfg: RLConfig, progress: bool = True, command: str = "",
             extra_hooks: tuple[Hook, ...] = ()) -> Path:
    """Finetunes stage S with KL-regularized REINFORCE; returns the exported weights folder."""
    from musicrl.data.variants import split_roots
    from musicrl.lm.io import load_stage, save_stage
    from musicrl.sampling import Sampler, sample_stage
    from rewards.tempo import TempoReward

    t0 = time.time()
    bundle = Path(cfg.bundle)
    init = cfg.init or str(bundle / "lm-semantic")
    mulan_dir = str(bundle / "mulan")
    if not (bundle / "mulan").exists():
        raise RLError(f"{bundle} has no mulan/ folder: pass bundle=<a generator bundle, e.g. "
                      "assets/small>")
    policy, meta = load_stage(init, "semantic")
    reference, _ = load_stage(init, "semantic")      # π_ref: frozen, reloaded on resume
    s_cfg = policy.cfg
    reward = TempoReward(cfg.tempo, width=cfg.reward_width)
    if reward.model.cfg.vocab != s_cfg.vocab:
        raise RLError(f"the tempo model reads {reward.model.cfg.vocab} semantic ids, the stage "
                      f"writes {s_cfg.vocab}: train the tempo model on this bundle's tokens")
    frames = int(round(cfg.seconds * s_cfg.frame_rate))
    if frames <= reward.model.cfg.max_lag:
        raise RLError(f"seconds={cfg.seconds} gives {frames} frames; the tempo reward needs "
                      f"more than {reward.model.cfg.max_lag}")
    roots = [cfg.data_root, *split_roots(cfg.extra_data)]
    _, tokens, bpm = prompt_pool(roots, "train", mulan_dir, cfg.drums_only, progress)
    m = s_cfg.mulan_levels
    tokens = tokens[..., :m]
    print(f"rl: stage S from {init} ({meta.get('steps', '?')} steps); {len(tokens)} train "
          f"prompts ({'with drums' if cfg.drums_only else 'all'}), {cfg.prompts} × "
          f"{cfg.samples} samples of {cfg.seconds:g} s per step, KL coefficient {cfg.kl_coef}")
    optimizer = adamw_cosine(policy, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.loop.steps, weight_decay=cfg.weight_decay,
                             grad_clip=cfg.grad_clip)
    sampler = Sampler()

    def step_fn(model, optimizer, batch, step):
        mulan = jnp.asarray(np.repeat(batch["mulan"], cfg.samples, axis=0))
        target = np.repeat(batch["bpm"], cfg.samples)
        key = jax.random.fold_in(jax.random.key(cfg.loop.seed + 7_919), step)
        codes = sample_stage(model, mulan, frames, key=key, sampler=sampler)    # [b, s, 1]
        r = reward(target, np.asarray(codes[..., 0]))
        adv = rloo_advantages(r.reshape(cfg.prompts, cfg.samples)).reshape(-1)
        ref = reference_logp(reference, mulan, codes)
        metrics = train_step(model, optimizer, mulan, codes, adv, ref, cfg.kl_coef)
        pred = reward.bpm(np.asarray(codes[..., 0]))
        metrics.update(reward=float(np.mean(r)),
                       hit=float(np.mean(np.abs(pred / target - 1.0) <= 0.08)))
        return metrics

    hooks = list(extra_hooks)
    valid = None
    if cfg.valid_clips:
        v_tok, v_bpm, v_clip = valid_prompts(cfg.data_root, mulan_dir, cfg.valid_clips,
                                             cfg.valid_samples, m, cfg.drums_only, progress)

        def score(step, model):
            return sampled_tempo_metrics(model, reward, v_tok, v_bpm, v_clip, frames)

        valid = LastEval(score)
        hooks.insert(0, Hook(cfg.eval_every, valid))
    final = run_loop(cfg.loop, model=policy, optimizer=optimizer,
                     batches=PromptBatches(tokens, bpm, cfg.prompts, cfg.loop.seed),
                     step_fn=step_fn, config=to_dict(cfg), hooks=hooks,
                     items_per_step=cfg.prompts * cfg.samples, items_name="samples",
                     progress=progress, desc="rl")
    out = Path(cfg.loop.workdir) / "weights"
    if final >= cfg.loop.steps:
        save_stage(out, policy, meta={
            "train_config": to_dict(cfg), "steps": meta.get("steps", 0), "rl_steps": final,
            "init": init, "command": command,
            "valid": valid.at(final, policy) if valid else {},
            "train_seconds_this_session": round(time.time() - t0, 1)})
        print(f"rl: stage S weights {out}" + (f"  valid: {valid.summary()}" if valid else ""))
    return out
