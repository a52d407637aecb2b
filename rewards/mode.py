"""Mode reward on semantic tokens: how surely a token stream is in the prompt's mode.

Mode is at chance in every generated report until something carries it: MuLan's audio
tower keeps none (docs/mulan.md), so stage S, conditioned on MuLan tokens, samples major
and minor streams alike whatever the prompt says. The semantic tokens themselves do
carry it — they are k-means clusters of frames whose features include CQT chroma
(:mod:`musicrl.semantic`) — so, as for tempo (:mod:`rewards.tempo`), a reward read
straight from stage S's output can choose among its samples before stage A runs.

Model (:class:`ModeModel`): semantic tokens [b, s] at 25 Hz → token embeddings → two
temporal convolutions (the second dilated) → per-frame features → mean and max over time
→ MLP → logits over the 24 keys (12 tonics × major/minor). The mode's probability is the
sum over tonics (:func:`mode_probs`). Predicting the key rather than the mode alone makes
the model read the pitch content key-relatively — a minor stream is minor relative to
its tonic — where a bag-of-tokens probe of the mode reaches 0.69 on valid (majority
0.58, ``training/recipes/mode_selection.py``).

With ``levels`` = q (``--preset small-acoustic``) the same model reads the first q codec
levels [b, t, q] at 50 Hz instead — stage A's output — with one embedding table per level
(summed per frame) and the frames averaged in pairs (``pool``) so that the convolutions
see the 25 Hz rate they were sized for. It ranks stage A's renderings of one semantic
stream (``Pipeline.generate(acoustic_best_of=N, acoustic_score=ModeReward(...))``): stage
A loses part of the mode its semantic input carries, and this picks the renderings that
kept it.

Trained (``musicrl train mode``) on random crops of the train split's tokens and of a
``musicrl data mode-variants`` root: every train clip re-rendered in its parallel mode
(same notes, instruments, timing and tonic; the 3rd, 6th and 7th degrees moved), so the
only thing that tells a clip from its twin is the mode — a model cannot score a mode by
the instruments or style that co-occur with it in the corpus, and a policy cannot raise
its reward that way. It is independent of the evaluation's mode estimator (chroma
templates on the decoded audio's CQT, :mod:`musicrl.evaluation.estimators`): different
input (cluster ids, not audio), a learned map, and neither sees the other's output.

Reward (:class:`ModeReward`): ``r(prompts, tokens)`` = the model's probability of the
mode the prompt names ("minor", "in A major", or a mood word of the captions:
"melancholic" → minor, "bright" → major; :func:`musicrl.data.captioning.mode_from_prompt`), in [0, 1]; NaN for a
prompt that names none (or both). An ensemble (``members`` > 1 in training) averages its
members' probabilities; ``combine="min"`` scores a stream by its least sure member.

Dimension legend: ``b`` batch, ``s`` frames (25 Hz), ``d`` width, ``k`` 24 keys
(index ``12 · minor + tonic``), ``m`` members.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.config import opt, register_presets
from musicrl.data.arrange import PITCH_NAMES
from musicrl.data.captioning import mode_from_prompt
from musicrl.errors import MusicrlError
from rewards.ensemble import Ensemble, load_model, save_model

__all__ = ["ModeConfig", "ModeModel", "ModeEnsemble", "ModeError", "ModeReward", "key_index",
           "mode_probs", "mode_loss", "save_mode", "load_mode", "mode_from_prompt",
           "keyed_tokens", "score_mode", "evaluate_mode", "MODES"]

MODES = ("major", "minor")
_ALIASES = {"Db": 1, "D#": 3, "E#": 5, "Fb": 4, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "B#": 0}


class ModeError(MusicrlError, ValueError):
    """A mode model or its inputs could not be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class ModeConfig:
    vocab: int = opt(512, "semantic token vocabulary (the semantic tokenizer's k)", min=2)
    frame_rate: float = opt(25.0, "semantic token rate (Hz)", min=1.0)
    embed: int = opt(64, "token embedding width", min=2)
    width: int = opt(96, "channels of the two temporal convolutions", min=2)
    kernel: int = opt(5, "kernel of the temporal convolutions (frames)", min=1)
    hidden: int = opt(128, "width of the MLP head", min=2)
    dropout: float = opt(0.3, "dropout on the pooled features while training", min=0.0,
                         max=0.9)
    min_frames: int = opt(25, "shortest stream the model scores (frames; 1 s at 25 Hz)", min=1)
    levels: int = opt(0, "0: read semantic tokens [b, s]; q > 0: read the first q codec "
                         "levels [b, t, q] (stage A's output; vocab = the codec's codebook)",
                      min=0, max=32)
    pool: int = opt(1, "frames averaged into one after the embedding (2: codec tokens at "
                       "50 Hz read at 25 Hz, the semantic rate the convolutions were sized for)",
                    min=1, max=16)

    def check(self) -> str | None:
        if self.min_frames < self.pool:
            return f"min_frames={self.min_frames} is shorter than pool={self.pool}"
        return None


register_presets(ModeConfig, {
    "tiny": ModeConfig(vocab=16, embed=8, width=8, kernel=3, hidden=16, min_frames=5),
    "tiny-acoustic": ModeConfig(vocab=64, frame_rate=50.0, levels=2, pool=2, embed=8, width=8,
                                kernel=3, hidden=16, min_frames=10),
    "small": ModeConfig(),
    "base": ModeConfig(vocab=1024, embed=128, width=192, hidden=256),
    # on stage A's output: the first 4 codec levels at 50 Hz (assets/small/lm-acoustic)
    "small-acoustic": ModeConfig(vocab=1024, frame_rate=50.0, levels=4, pool=2, min_frames=50),
})


def key_index(tonic: str, mode: str) -> int:
    """'A', 'minor' → 12 + 9: the class index of a key (``12 · minor + tonic``)."""
    if mode not in MODES:
        raise ModeError(f"mode {mode!r}: use 'major' or 'minor'")
    if tonic in PITCH_NAMES:
        pc = PITCH_NAMES.index(tonic)
    elif tonic in _ALIASES:
        pc = _ALIASES[tonic]
    else:
        raise ModeError(f"unknown tonic {tonic!r}; use one of {PITCH_NAMES}")
    return 12 * MODES.index(mode) + pc


class ModeModel(nnx.Module):
    """Semantic tokens [b, s] (or, with ``levels`` = q, codec tokens [b, t, q]) → logits
    over the 24 keys [b, 24]. Codec levels get their own embedding tables (one table of
    ``q · vocab`` rows), summed per frame, as in the acoustic stage's input."""

    def __init__(self, cfg: ModeConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab * max(cfg.levels, 1), cfg.embed, rngs=rngs)
        self.conv1 = nnx.Conv(cfg.embed, cfg.width, kernel_size=(cfg.kernel,), padding="SAME",
                              rngs=rngs)
        self.conv2 = nnx.Conv(cfg.width, cfg.width, kernel_size=(cfg.kernel,),
                              kernel_dilation=(2,), padding="SAME", rngs=rngs)
        self.norm = nnx.LayerNorm(cfg.width, rngs=rngs)
        self.frame = nnx.Linear(cfg.width, cfg.hidden, rngs=rngs)
        self.head_norm = nnx.LayerNorm(2 * cfg.hidden, rngs=rngs)
        self.drop = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.hidden = nnx.Linear(2 * cfg.hidden, cfg.hidden, rngs=rngs)
        self.out = nnx.Linear(cfg.hidden, 24, rngs=rngs)

    def __call__(self, tokens_bs: jax.Array) -> jax.Array:
        cfg = self.cfg
        if tokens_bs.shape[1] < cfg.min_frames:
            raise ModeError(f"{tokens_bs.shape[1]} frames of tokens; the mode model needs at "
                            f"least min_frames={cfg.min_frames} ({cfg.min_frames / cfg.frame_rate:g}"
                            " s)")
        h = self._embed(jnp.asarray(tokens_bs, jnp.int32))
        h = jax.nn.gelu(self.conv1(h))
        h = self.norm(jax.nn.gelu(self.conv2(h)))
        f = jax.nn.gelu(self.frame(h))                                       # [b, s, d]
        pooled = self.head_norm(jnp.concatenate([f.mean(axis=1), f.max(axis=1)], -1))
        return self.out(jax.nn.gelu(self.hidden(self.drop(pooled))))

    def _embed(self, tokens: jax.Array) -> jax.Array:
        cfg = self.cfg
        want = 3 if cfg.levels else 2
        if tokens.ndim != want or (cfg.levels and tokens.shape[2] != cfg.levels):
            raise ModeError(f"tokens of shape {tokens.shape}: this mode model reads "
                            + (f"codec tokens [batch, frames, {cfg.levels}]" if cfg.levels
                               else "semantic tokens [batch, frames]"))
        if cfg.levels:
            h = self.embed(tokens + cfg.vocab * jnp.arange(cfg.levels)).sum(axis=2)
        else:
            h = self.embed(tokens)
        if cfg.pool > 1:
            b, t, d = h.shape
            h = h[:, :t // cfg.pool * cfg.pool].reshape(b, t // cfg.pool, cfg.pool, d).mean(2)
        return h


class ModeEnsemble(Ensemble):
    """Members of one config; ``__call__`` returns log of their mean probability over the
    24 keys, [b, 24] (:class:`rewards.ensemble.Ensemble`)."""

    member_cls = ModeModel
    error = ModeError


def mode_probs(logits_bk: jax.Array) -> jax.Array:
    """P(major), P(minor) of each row: the key probabilities summed over tonics, [b, 2]."""
    p = jax.nn.softmax(logits_bk, axis=-1).reshape(-1, 2, 12)
    return p.sum(-1)


def mode_loss(model: ModeModel, tokens_bs: jax.Array, key_b: jax.Array
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy over the 24 keys; metrics: key and mode accuracy of the argmax."""
    logits = model(tokens_bs)
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.mean(jnp.take_along_axis(logp, key_b[:, None], axis=1))
    pred = jnp.argmax(logits, -1)
    mode_pred = jnp.argmax(mode_probs(logits), -1)
    return loss, {"loss": loss, "key_acc": jnp.mean(pred == key_b),
                  "mode_acc": jnp.mean(mode_pred == key_b // 12)}


def save_mode(path: str | Path, model: ModeModel | ModeEnsemble, meta: dict[str, Any],
              dtype: Any = None) -> Path:
    """Inference weights + meta (``meta['config']``; an ensemble's ``meta['members']``) to
    ``path``, atomically."""
    return save_model(path, model, meta, "mode", dtype=dtype)


def load_mode(path: str | Path) -> tuple[ModeModel | ModeEnsemble, dict[str, Any]]:
    """Loads a mode model (or ensemble), in inference mode (no dropout), from a weights
    folder or a training work dir."""
    model, meta = load_model(path, "mode", ModeConfig, ModeModel, ModeEnsemble,
                             "train one with `musicrl train mode` (it lands in "
                             "<workdir>/weights) or pass assets/small/mode")
    model.eval()
    return model, meta


@nnx.jit
def _logits(model: ModeModel | ModeEnsemble, tokens_bs: jax.Array) -> jax.Array:
    return model(tokens_bs)


@nnx.jit
def _member_logits(model: ModeEnsemble, tokens_bs: jax.Array) -> jax.Array:
    return model.member_logits(tokens_bs)


def keyed_tokens(root: str, split: str, levels: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """(token streams, key indices) of a split's clips with key and mode labels: semantic
    tokens [s], or with ``levels`` = q the first q codec levels [t, q]."""
    from musicrl.data.manifest import load_clips
    from musicrl.data.tokens import load_tokens

    token_dir = Path(root) / "tokens"
    toks = load_tokens(token_dir, split=split)
    if not toks:
        raise ModeError(f"no {split} clips in the token cache {token_dir}: run "
                        f"`musicrl tokenize --root {root}`")
    clips = [c for c in load_clips(root, splits=[split]) if c.id in toks and c.labels
             and c.labels.get("key") and c.labels.get("mode") in MODES]
    if not clips:
        raise ModeError(f"no {split} clip of {root} has key and mode labels: the mode model "
                        "trains on the bundled corpus's labels (`musicrl data build`)")
    if levels and toks[clips[0].id][1].shape[1] < levels:
        raise ModeError(f"the token cache {token_dir} holds {toks[clips[0].id][1].shape[1]} "
                        f"codec levels; the model reads {levels}")
    return ([np.asarray(toks[c.id][0] if not levels else toks[c.id][1][:, :levels], np.int32)
             for c in clips],
            np.array([key_index(c.labels["key"], c.labels["mode"]) for c in clips], np.int32))


def predict(model: ModeModel | ModeEnsemble, seqs: Sequence[np.ndarray], frames: int,
            batch: int = 128) -> np.ndarray:
    """Key log-probabilities of the first ``frames`` of each stream, float32 [n, 24]."""
    x = np.stack([s[:frames] for s in seqs])
    return np.concatenate([np.asarray(jax.nn.log_softmax(_logits(model, jnp.asarray(
        x[i:i + batch])), -1)) for i in range(0, len(x), batch)])


def score_mode(model: ModeModel | ModeEnsemble, seqs: list[np.ndarray], keys: np.ndarray,
               frames: int) -> dict[str, float]:
    """Mode and key accuracy on the first ``frames`` of each stream, beside the majority
    mode's share and permutation chance of the mode (predictions against the other clips'
    labels)."""
    keep = [i for i, s in enumerate(seqs) if len(s) >= frames]
    if len(keep) < 2:
        raise ModeError(f"{len(keep)} of {len(seqs)} streams have {frames} frames "
                        f"({frames / model.cfg.frame_rate:g} s); score a shorter start")
    logits = predict(model, [seqs[i] for i in keep], frames)
    y = keys[keep]
    pm = np.asarray(mode_probs(jnp.asarray(logits)))
    mode_pred, mode_true = pm.argmax(-1), y // 12
    agree = mode_pred[:, None] == mode_true[None, :]
    off = ~np.eye(len(y), dtype=bool)
    minor_share = float(np.mean(mode_true))
    return {"mode_acc": float(np.mean(mode_pred == mode_true)),
            "mode_chance": float(np.mean(agree[off])),
            "majority": max(minor_share, 1 - minor_share),
            "key_acc": float(np.mean(logits.argmax(-1) == y)),
            "nll_mode": float(-np.mean(np.log(np.maximum(pm[np.arange(len(y)), mode_true],
                                                         1e-9)))),
            "clips": float(len(y))}


def evaluate_mode(model: ModeModel | ModeEnsemble, root: str, split: str = "test",
                  seconds: Sequence[float] = (4.0, 10.0), out: str | Path | None = None,
                  meta: dict[str, Any] | None = None,
                  twins_root: str | None = None) -> dict[str, Any]:
    """The mode model on the real clips of a split from the first S seconds of their
    tokens, for every S in ``seconds``; with ``twins_root`` (a mode-variants root with a
    token cache) also on its clips and, pairwise, how often a clip's own mode scores higher
    on the clip than on its twin. With ``out``: report.json and mode.png."""
    from musicrl.atomic import write_text_atomic

    seqs, keys = keyed_tokens(root, split, model.cfg.levels)
    report: dict[str, Any] = {**(meta or {}), "root": str(root), "split": split,
                              "clips": len(seqs), "by_seconds": {}}
    for s in seconds:
        frames = int(round(s * model.cfg.frame_rate))
        if frames < model.cfg.min_frames:
            raise ModeError(f"{s:g} s is {frames} frames; the model needs at least "
                            f"min_frames={model.cfg.min_frames}")
        report["by_seconds"][f"{s:g}"] = score_mode(model, seqs, keys, frames)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "report.json", json.dumps(report, indent=1))
        _plot_mode(model, seqs, keys, report, out / "mode.png")
    return report


def _plot_mode(model, seqs, keys, report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["by_seconds"])
    frames = int(round(float(names[-1]) * model.cfg.frame_rate))
    keep = [i for i, s in enumerate(seqs) if len(s) >= frames]
    pm = np.asarray(mode_probs(jnp.asarray(predict(model, [seqs[i] for i in keep], frames))))
    minor = keys[keep] // 12 == 1
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(0, 1, 21)
    a.hist(pm[~minor, 1], bins, alpha=0.6, label="labelled major")
    a.hist(pm[minor, 1], bins, alpha=0.6, label="labelled minor")
    a.set(xlabel="P(minor)", ylabel="clips",
          title=f"mode model, first {names[-1]} s of "
              f"{'codec' if model.cfg.levels else 'semantic'} tokens ({report['split']})")
    a.legend(fontsize=8)
    w = 0.25
    for j, (k, lab) in enumerate((("mode_acc", "mode accuracy"), ("mode_chance", "chance"),
                                  ("key_acc", "key accuracy (24 classes)"))):
        b.bar(np.arange(len(names)) + (j - 1) * w, [report["by_seconds"][n][k] for n in names],
              w, label=lab)
    b.set(xticks=np.arange(len(names)), xticklabels=[f"first {n} s" for n in names],
          ylim=(0, 1), title="accuracy beside chance")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class ModeReward:
    """``reward(prompts, tokens) -> float[b]``: P(the prompt's mode | tokens), NaN for a
    prompt that names no mode. ``tokens`` are semantic tokens [b, s] (25 Hz, at least
    ``min_frames``); a row of ``prompts`` may also be "major" or "minor" itself.

    With an ensemble, ``combine="mean"`` scores the members' average probability,
    ``"min"`` the least of the members' (the worst case; see :class:`rewards.tempo.TempoReward`).
    """

    def __init__(self, weights_dir: str | Path = "assets/small/mode", combine: str = "mean"):
        if combine not in ("mean", "min"):
            raise ModeError(f"combine={combine!r}: use 'mean' or 'min'")
        self.model, self.meta = load_mode(weights_dir)
        if combine == "min" and not isinstance(self.model, ModeEnsemble):
            raise ModeError(f"combine='min' needs an ensemble; {weights_dir} holds one model "
                            "(train one with `musicrl train mode members=5`)")
        self.combine = combine

    def _tokens(self, tokens_bs: np.ndarray | jax.Array) -> jax.Array:
        tokens = jnp.asarray(tokens_bs, jnp.int32)
        lv = self.model.cfg.levels
        if tokens.ndim != (3 if lv else 2) or (lv and tokens.shape[2] < lv):
            raise ModeError("tokens must be " + (f"codec tokens [batch, frames, ≥{lv}]" if lv
                            else "semantic tokens [batch, frames]")
                            + f", got shape {tokens.shape}")
        if lv:
            tokens = tokens[:, :, :lv]
        if int(jnp.max(tokens)) >= self.model.cfg.vocab or int(jnp.min(tokens)) < 0:
            raise ModeError(f"token ids must be in [0, {self.model.cfg.vocab}): this mode "
                            "model was trained on another tokenizer")
        return tokens

    def minor(self, tokens_bs: np.ndarray | jax.Array) -> np.ndarray:
        """P(minor) of each row, float32 [b] (an ensemble's mean)."""
        return np.asarray(mode_probs(_logits(self.model, self._tokens(tokens_bs)))[:, 1],
                          np.float32)

    def __call__(self, prompts: Sequence[str], tokens_bs: np.ndarray | jax.Array) -> np.ndarray:
        if len(prompts) != np.shape(tokens_bs)[0]:
            raise ModeError(f"{len(prompts)} prompts for {np.shape(tokens_bs)[0]} token rows")
        want = [p if p in MODES else mode_from_prompt(p) for p in prompts]
        idx = np.array([MODES.index(m) if m else 0 for m in want])
        tokens = self._tokens(tokens_bs)
        if self.combine == "min":
            p = np.min([np.asarray(mode_probs(m)) for m in _member_logits(self.model, tokens)],
                       axis=0)
        else:
            p = np.asarray(mode_probs(_logits(self.model, tokens)))
        score = p[np.arange(len(idx)), idx]
        return np.where([m is not None for m in want], score, np.nan).astype(np.float32)
