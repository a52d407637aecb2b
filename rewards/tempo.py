"""Tempo reward on semantic tokens: how likely a token stream is at the prompt's BPM.

Stage S writes the semantic stream, and that stream is where the generator's tempo is
chosen (docs/generator.md "Where tempo is lost"): stage A and the codec keep the tempo
their semantic input carries. A reward read straight from the semantic tokens therefore
scores what stage S chose without sampling stage A or decoding audio — cheap enough
to score every sample of an RL step on this CPU.

Model (:class:`TempoModel`): semantic tokens [b, s] at 25 Hz → token embeddings → two
convolutions over time → ``channels`` learned per-frame signals → their normalized
autocorrelation at lags of ``min_lag``…``max_lag`` frames (0.2–2.4 s), together with the
autocorrelation of the token identities themselves (the fraction of frames whose token
recurs that many frames later) → MLP → logits over ``bins`` log-spaced BPM bins. Only
*periodicity* reaches the head: no pooled content feature, so the model cannot guess a
tempo from the style alone, and a policy cannot raise its reward by changing style.

Trained on the corpus labels (``musicrl train tempo``: random crops of the train split's
semantic tokens, plus ``musicrl data tempo-variants`` roots, whose passages recur at
other tempi so that only the periodicity tells them apart), with a Gaussian target over
log BPM. It is independent of the evaluation's tempo estimator (librosa's beat tracker
on the decoded audio, :mod:`musicrl.evaluation.estimators`): different input, different
method, and neither sees the other's output.

An ensemble (:class:`TempoEnsemble`: members trained alike from other seeds, their
probabilities averaged — the prediction-ensemble form of WARM) is a drop-in
replacement. Best-of-N selection seeks out the streams a single model rates too
highly; members err on different streams, so their average is harder to fool.

Reward (:class:`TempoReward`): ``r(tokens, bpm)`` = the model's probability that the
stream's tempo lies within ±``tolerance`` (8 %) of the target BPM, in [0, 1]. A prompt
that names no number but a tempo word of the captions ("leisurely", "mid-tempo",
"brisk") scores the probability of that word's bucket (slow < 90 ≤ medium ≤ 130 < fast).

Dimension legend: ``b`` batch, ``s`` frames (25 Hz), ``d`` width, ``c`` channels,
``l`` lags, ``k`` BPM bins.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.atomic import write_text_atomic
from musicrl.config import opt, register_presets
from musicrl.data.arrange import TEMPO_BUCKET_BPM
from musicrl.errors import MusicrlError
from rewards.ensemble import Ensemble, load_model, save_model

__all__ = ["TempoConfig", "TempoModel", "TempoEnsemble", "TempoError", "autocorrelation", "token_recurrence",
           "bin_centers", "soft_targets", "tempo_loss", "within_mass", "closeness", "predict_bpm",
           "save_tempo", "load_tempo", "TempoReward", "bpm_from_prompt", "bucket_from_prompt",
           "range_mass", "labelled_tokens",
           "score_tempo", "evaluate_tempo"]


class TempoError(MusicrlError, ValueError):
    """A tempo model or its inputs could not be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class TempoConfig:
    vocab: int = opt(512, "semantic token vocabulary (the semantic tokenizer's k)", min=2)
    frame_rate: float = opt(25.0, "semantic token rate (Hz)", min=1.0)
    embed: int = opt(32, "token embedding width", min=2)
    width: int = opt(64, "channels of the two temporal convolutions", min=2)
    kernel: int = opt(5, "kernel of the temporal convolutions (frames)", min=1)
    channels: int = opt(8, "learned per-frame signals whose autocorrelation is read", min=1)
    min_lag: int = opt(5, "shortest lag (frames): 0.2 s at 25 Hz = 300 BPM", min=1)
    max_lag: int = opt(60, "longest lag (frames): 2.4 s at 25 Hz", min=2)
    hidden: int = opt(128, "width of the MLP head", min=2)
    bins: int = opt(64, "log-spaced BPM bins of the output", min=4)
    min_bpm: float = opt(40.0, "centre of the lowest bin", min=1.0)
    max_bpm: float = opt(240.0, "centre of the highest bin", min=2.0)
    sigma: float = opt(0.03, "std of the Gaussian target over log BPM (0.03 ≈ 3 %)", min=1e-3)

    def check(self) -> str | None:
        if self.max_lag <= self.min_lag:
            return f"max_lag={self.max_lag} must exceed min_lag={self.min_lag}"
        if self.max_bpm <= self.min_bpm:
            return f"max_bpm={self.max_bpm} must exceed min_bpm={self.min_bpm}"
        return None


register_presets(TempoConfig, {
    "tiny": TempoConfig(vocab=16, embed=8, width=8, kernel=3, channels=2, max_lag=20,
                        hidden=16, bins=16),
    "small": TempoConfig(),
    "base": TempoConfig(vocab=1024, embed=64, width=128, channels=16, hidden=256),
})


def bin_centers(cfg: TempoConfig) -> np.ndarray:
    """BPM at the centre of each output bin, float32 [k] (log-spaced)."""
    return np.exp(np.linspace(np.log(cfg.min_bpm), np.log(cfg.max_bpm), cfg.bins)
                  ).astype(np.float32)


def autocorrelation(x_bsc: jax.Array, min_lag: int, max_lag: int) -> jax.Array:
    """Unbiased autocorrelation of each channel (mean removed) at lags min…max, divided
    by lag 0: [b, c, max_lag − min_lag + 1]. Rows shorter than ``max_lag`` are an error
    of the caller (checked by :class:`TempoModel`)."""
    x = x_bsc - jnp.mean(x_bsc, axis=1, keepdims=True)
    s = x.shape[1]
    n = int(2 ** np.ceil(np.log2(s + max_lag + 1)))             # no circular wrap-around
    spec = jnp.fft.rfft(x, n=n, axis=1)
    ac = jnp.fft.irfft(spec * jnp.conj(spec), n=n, axis=1)[:, : max_lag + 1]    # [b, l, c]
    ac = ac / jnp.maximum(s - jnp.arange(max_lag + 1), 1).astype(ac.dtype)[None, :, None]
    ac = ac[:, min_lag:] / jnp.maximum(ac[:, :1], 1e-6)
    return jnp.swapaxes(ac, 1, 2)


def token_recurrence(tokens_bs: jax.Array, min_lag: int, max_lag: int) -> jax.Array:
    """Fraction of frames whose token recurs ``lag`` frames later, [b, l] for each lag."""
    s = tokens_bs.shape[1]
    out = [jnp.mean(tokens_bs[:, lag:] == tokens_bs[:, : s - lag], axis=1)
           for lag in range(min_lag, max_lag + 1)]
    return jnp.stack(out, axis=1).astype(jnp.float32)


class TempoModel(nnx.Module):
    """Semantic tokens [b, s] → logits over BPM bins [b, k]."""

    def __init__(self, cfg: TempoConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab, cfg.embed, rngs=rngs)
        self.conv1 = nnx.Conv(cfg.embed, cfg.width, kernel_size=(cfg.kernel,), padding="SAME",
                              rngs=rngs)
        self.conv2 = nnx.Conv(cfg.width, cfg.width, kernel_size=(cfg.kernel,),
                              kernel_dilation=(2,), padding="SAME", rngs=rngs)
        self.norm = nnx.LayerNorm(cfg.width, rngs=rngs)
        self.signals = nnx.Linear(cfg.width, cfg.channels, rngs=rngs)
        lags = cfg.max_lag - cfg.min_lag + 1
        self.head_norm = nnx.LayerNorm((cfg.channels + 1) * lags, rngs=rngs)
        self.hidden = nnx.Linear((cfg.channels + 1) * lags, cfg.hidden, rngs=rngs)
        self.out = nnx.Linear(cfg.hidden, cfg.bins, rngs=rngs)

    def features(self, tokens_bs: jax.Array) -> jax.Array:
        """The periodicity features the head reads, [b, (channels + 1) · lags]."""
        cfg = self.cfg
        if tokens_bs.shape[1] <= cfg.max_lag:
            raise TempoError(f"{tokens_bs.shape[1]} frames of tokens; the tempo model needs "
                             f"more than max_lag={cfg.max_lag} ({cfg.max_lag / cfg.frame_rate:g}"
                             " s)")
        h = jax.nn.gelu(self.conv1(self.embed(tokens_bs)))
        h = self.norm(jax.nn.gelu(self.conv2(h)))
        ac = autocorrelation(self.signals(h), cfg.min_lag, cfg.max_lag)       # [b, c, l]
        rec = token_recurrence(tokens_bs, cfg.min_lag, cfg.max_lag)[:, None]  # [b, 1, l]
        rec = rec - jnp.mean(rec, axis=-1, keepdims=True)
        return jnp.concatenate([ac, rec], axis=1).reshape(tokens_bs.shape[0], -1)

    def __call__(self, tokens_bs: jax.Array) -> jax.Array:
        x = self.head_norm(self.features(jnp.asarray(tokens_bs, jnp.int32)))
        return self.out(jax.nn.gelu(self.hidden(x)))


class TempoEnsemble(Ensemble):
    """Members of one config; ``__call__`` returns log of their mean probability over the
    BPM bins, [b, k] (:class:`rewards.ensemble.Ensemble`)."""

    member_cls = TempoModel
    error = TempoError


def soft_targets(cfg: TempoConfig, bpm_b: jax.Array) -> jax.Array:
    """Gaussian over log BPM, centred at each target, normalized over the bins: [b, k]."""
    d = jnp.log(jnp.asarray(bin_centers(cfg)))[None] - jnp.log(bpm_b)[:, None]
    return jax.nn.softmax(-0.5 * (d / cfg.sigma) ** 2, axis=-1)


def within_mass(cfg: TempoConfig, logits_bk: jax.Array, bpm_b: jax.Array,
                tolerance: float = 0.08) -> jax.Array:
    """Probability mass of the bins whose centre is within ±tolerance of each BPM: [b]."""
    c = jnp.asarray(bin_centers(cfg))[None]
    inside = jnp.abs(c / jnp.asarray(bpm_b, jnp.float32)[:, None] - 1.0) <= tolerance
    return jnp.sum(jax.nn.softmax(logits_bk, axis=-1) * inside, axis=-1)


def closeness(cfg: TempoConfig, logits_bk: jax.Array, bpm_b: jax.Array, width: float = 0.15
              ) -> jax.Array:
    """E over the predicted BPM of exp(−½ (log(BPM / target) / width)²), in [0, 1]: [b].

    A smooth reward: unlike :func:`within_mass` it still ranks two samples that both
    miss the ±8 % window by how far they miss it."""
    d = jnp.log(jnp.asarray(bin_centers(cfg)))[None] - jnp.log(
        jnp.asarray(bpm_b, jnp.float32))[:, None]
    return jnp.sum(jax.nn.softmax(logits_bk, axis=-1) * jnp.exp(-0.5 * (d / width) ** 2), -1)


def predict_bpm(cfg: TempoConfig, logits_bk: jax.Array) -> jax.Array:
    """The most likely bin's BPM, [b]."""
    return jnp.asarray(bin_centers(cfg))[jnp.argmax(logits_bk, axis=-1)]


def tempo_loss(model: TempoModel, tokens_bs: jax.Array, bpm_b: jax.Array
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy against the Gaussian target; metrics: within 8 % of the argmax."""
    logits = model(tokens_bs)
    loss = -jnp.mean(jnp.sum(soft_targets(model.cfg, bpm_b) * jax.nn.log_softmax(logits), -1))
    pred = predict_bpm(model.cfg, logits)
    hit = jnp.mean(jnp.abs(pred / bpm_b - 1.0) <= 0.08)
    return loss, {"loss": loss, "within_8pct": hit,
                  "mass_8pct": jnp.mean(within_mass(model.cfg, logits, bpm_b))}


def save_tempo(path: str | Path, model: TempoModel | TempoEnsemble, meta: dict[str, Any],
               dtype: Any = None) -> Path:
    """Inference weights + meta (``meta['config']`` is the model config; an ensemble's
    ``meta['members']`` its size) to ``path``, atomically."""
    return save_model(path, model, meta, "tempo", dtype=dtype)


def load_tempo(path: str | Path) -> tuple[TempoModel | TempoEnsemble, dict[str, Any]]:
    """Loads a tempo model (or ensemble, when ``meta['members']`` says so) from a weights
    folder or a training work dir (its weights/)."""
    return load_model(path, "tempo", TempoConfig, TempoModel, TempoEnsemble,
                      "train one with `musicrl train tempo` (it lands in <workdir>/weights) "
                      "or pass assets/small/tempo")


_BPM = re.compile(r"(\d{2,3}(?:\.\d+)?)\s*(?:bpm|beats per minute)\b", re.IGNORECASE)


def bpm_from_prompt(prompt: str) -> float:
    """The BPM a prompt states ("… 97 bpm …", "about 120 BPM"), or NaN when it states none."""
    m = _BPM.search(prompt)
    return float(m.group(1)) if m else float("nan")


def _bucket_patterns() -> dict[str, re.Pattern]:
    from musicrl.data.captioning import TEMPO_WORDS

    return {b: re.compile("|".join(rf"(?<![\w-]){re.escape(w)}(?![\w])" for w in words),
                          re.IGNORECASE) for b, words in TEMPO_WORDS.items()}


_BUCKET_WORDS = _bucket_patterns()


def bucket_from_prompt(prompt: str) -> str | None:
    """The tempo bucket a prompt's tempo words name ("a leisurely chorale" → "slow"), or
    None when it names none or words of two buckets."""
    found = [b for b, pattern in _BUCKET_WORDS.items() if pattern.search(prompt)]
    return found[0] if len(found) == 1 else None


def range_mass(cfg: TempoConfig, logits_bk: jax.Array, lo_b: jax.Array, hi_b: jax.Array
               ) -> jax.Array:
    """Probability mass of the bins whose centre lies in [lo, hi] of each row: [b]."""
    c = jnp.asarray(bin_centers(cfg))[None]
    inside = (c >= jnp.asarray(lo_b, jnp.float32)[:, None]) & \
        (c <= jnp.asarray(hi_b, jnp.float32)[:, None])
    return jnp.sum(jax.nn.softmax(logits_bk, axis=-1) * inside, axis=-1)


@nnx.jit
def _logits(model: TempoModel | TempoEnsemble, tokens_bs: jax.Array) -> jax.Array:
    return model(tokens_bs)


@nnx.jit
def _member_logits(model: TempoEnsemble, tokens_bs: jax.Array) -> jax.Array:
    return model.member_logits(tokens_bs)


def labelled_tokens(root: str, split: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(semantic token streams, BPM labels, has-drums flags) of a split's labelled clips."""
    from musicrl.data.manifest import load_clips
    from musicrl.data.tokens import load_tokens

    token_dir = Path(root) / "tokens"
    toks = load_tokens(token_dir, split=split)
    if not toks:
        raise TempoError(f"no {split} clips in the token cache {token_dir}: run "
                         f"`musicrl tokenize --root {root}`")
    clips = [c for c in load_clips(root, splits=[split])
             if c.id in toks and c.labels and c.labels.get("bpm")]
    if not clips:
        raise TempoError(f"no {split} clip of {root} has a bpm label: the tempo model trains on "
                         "the bundled corpus's labels (`musicrl data build`)")
    return ([np.asarray(toks[c.id][0], np.int32) for c in clips],
            np.array([float(c.labels["bpm"]) for c in clips], np.float32),
            np.array([bool(c.labels.get("drums")) for c in clips]))


def score_tempo(model: TempoModel | TempoEnsemble, seqs: list[np.ndarray], bpm: np.ndarray,
                drums: np.ndarray, frames: int, batch: int = 128) -> dict[str, float]:
    """Within 8 % of the label (argmax bin) on the first ``frames`` of each stream, for
    all clips and those with drums, beside permutation chance (predictions scored against
    the other clips' labels)."""
    keep = [i for i, s in enumerate(seqs) if len(s) >= frames]
    x = np.stack([seqs[i][:frames] for i in keep])
    y, d = bpm[keep], drums[keep]
    pred = np.concatenate([np.asarray(predict_bpm(model.cfg, _logits(model, jnp.asarray(
        x[i:i + batch])))) for i in range(0, len(x), batch)])
    hit = np.abs(pred[:, None] / y[None, :] - 1.0) <= 0.08          # [pred i, label j]
    off = ~np.eye(len(y), dtype=bool)

    def rates(m: np.ndarray) -> tuple[float, float]:
        sub = hit[np.ix_(m, m)]
        return float(np.mean(np.diag(sub))), float(np.mean(sub[off[np.ix_(m, m)]]))

    acc, ch = rates(np.ones(len(y), bool))
    out = {"within_8pct": acc, "chance": ch, "clips": float(len(y))}
    if d.sum() >= 2:
        acc_d, ch_d = rates(d)
        out.update(within_8pct_drums=acc_d, chance_drums=ch_d, clips_drums=float(d.sum()))
    return out


def evaluate_tempo(model: TempoModel | TempoEnsemble, root: str, split: str = "test",
                   seconds: Sequence[float] = (4.0, 10.0), out: str | Path | None = None,
                   meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tempo model on the real clips of a split: within 8 % of the labelled BPM from the
    first S seconds of each clip's semantic tokens, for every S in ``seconds``, all clips
    and those with drums, beside permutation chance. With ``out``: report.json and
    tempo.png (predicted vs labelled BPM at the first S, and the hit rates)."""
    seqs, bpm, drums = labelled_tokens(root, split)
    report: dict[str, Any] = {**(meta or {}), "root": str(root), "split": split,
                              "clips": len(seqs), "clips_drums": int(drums.sum()),
                              "by_seconds": {}}
    for s in seconds:
        frames = int(round(s * model.cfg.frame_rate))
        if frames <= model.cfg.max_lag:
            raise TempoError(f"{s:g} s is {frames} frames; the model needs more than "
                             f"max_lag={model.cfg.max_lag}")
        report["by_seconds"][f"{s:g}"] = score_tempo(model, seqs, bpm, drums, frames)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "report.json", json.dumps(report, indent=1))
        _plot_tempo(model, seqs, bpm, drums, report, out / "tempo.png")
    return report


def _plot_tempo(model, seqs, bpm, drums, report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s0 = next(iter(report["by_seconds"]))
    frames = int(round(float(s0) * model.cfg.frame_rate))
    keep = [i for i, s in enumerate(seqs) if len(s) >= frames]
    x = np.stack([seqs[i][:frames] for i in keep])
    pred = np.concatenate([np.asarray(predict_bpm(model.cfg, _logits(model, jnp.asarray(
        x[i:i + 128])))) for i in range(0, len(x), 128)])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    d = drums[keep]
    a.scatter(bpm[keep][~d], pred[~d], s=9, alpha=0.6, label="no drums")
    a.scatter(bpm[keep][d], pred[d], s=9, alpha=0.6, label="drums")
    lo, hi = 50, 200
    grid = np.array([lo, hi])
    a.plot(grid, grid, "k-", lw=0.8)
    a.fill_between(grid, grid * 0.92, grid * 1.08, color="k", alpha=0.1, label="±8 %")
    a.set(xscale="log", yscale="log", xlabel="labelled BPM", ylabel="predicted BPM",
          title=f"tempo model, first {s0} s of semantic tokens ({report['split']})")
    a.legend(fontsize=8)
    names = list(report["by_seconds"])
    w = 0.2
    for j, (key, lab) in enumerate((("within_8pct", "all"), ("within_8pct_drums", "drums"),
                                    ("chance", "chance (all)"),
                                    ("chance_drums", "chance (drums)"))):
        vals = [report["by_seconds"][n].get(key, np.nan) for n in names]
        b.bar(np.arange(len(names)) + (j - 1.5) * w, vals, w, label=lab)
    b.set(xticks=np.arange(len(names)), xticklabels=[f"first {n} s" for n in names],
          ylabel="within 8 % of the label", ylim=(0, 1), title="hit rate beside chance")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class TempoReward:
    """``reward(bpm, tokens) -> float[b]``: P(tempo within ±tolerance of bpm | tokens), or
    with ``width`` > 0 the smooth :func:`closeness` (a Gaussian of that width in log BPM).

    ``tokens`` are semantic tokens [b, s] (25 Hz; more than ``max_lag`` frames). ``bpm``
    is one target per row — a number, or a prompt from which :func:`bpm_from_prompt`
    reads it; a prompt without a number but with the tempo words of one bucket
    (:func:`bucket_from_prompt`) scores the mass of that bucket's BPM range (with either
    ``width``); a row without a target scores NaN (the caller decides what that means).

    With an ensemble (:class:`TempoEnsemble`), ``combine="mean"`` scores the members'
    average probability; ``"min"`` the least of the members' scores — the worst-case
    reward of reward-model ensembles against over-optimization (Coste et al., 2023): a
    stream is rated only as surely as its most doubtful member rates it.
    """

    def __init__(self, weights_dir: str | Path = "assets/small/tempo", tolerance: float = 0.08,
                 width: float = 0.0, combine: str = "mean"):
        if not 0 < tolerance < 1:
            raise TempoError(f"tolerance={tolerance} must be in (0, 1)")
        if not 0 <= width < 2:
            raise TempoError(f"width={width} must be in [0, 2) (0: the ±tolerance window)")
        if combine not in ("mean", "min"):
            raise TempoError(f"combine={combine!r}: use 'mean' or 'min'")
        self.model, self.meta = load_tempo(weights_dir)
        if combine == "min" and not isinstance(self.model, TempoEnsemble):
            raise TempoError(f"combine='min' needs an ensemble; {weights_dir} holds one model "
                             "(train one with `musicrl train tempo members=5`)")
        self.tolerance, self.width, self.combine = tolerance, width, combine

    def _tokens(self, tokens_bs: np.ndarray | jax.Array) -> jax.Array:
        tokens = jnp.asarray(tokens_bs, jnp.int32)
        if tokens.ndim != 2:
            raise TempoError(f"tokens must be [batch, frames], got shape {tokens.shape}")
        if int(jnp.max(tokens)) >= self.model.cfg.vocab or int(jnp.min(tokens)) < 0:
            raise TempoError(f"token ids must be in [0, {self.model.cfg.vocab}): this tempo "
                             "model was trained on another semantic tokenizer")
        return tokens

    def logits(self, tokens_bs: np.ndarray | jax.Array) -> jax.Array:
        """Log-probabilities over the BPM bins, [b, k] (an ensemble's: of its mean)."""
        return _logits(self.model, self._tokens(tokens_bs))

    def __call__(self, bpm: Sequence[float | str] | np.ndarray, tokens_bs: np.ndarray | jax.Array
                 ) -> np.ndarray:
        target = np.array([bpm_from_prompt(b) if isinstance(b, str) else float(b) for b in bpm],
                          np.float32)
        if len(target) != np.shape(tokens_bs)[0]:
            raise TempoError(f"{len(target)} targets for {np.shape(tokens_bs)[0]} token rows")
        ok = np.isfinite(target) & (target > 0)
        tgt = jnp.asarray(np.where(ok, target, 100.0))
        buckets = [bucket_from_prompt(b) if isinstance(b, str) and not k else None
                   for b, k in zip(bpm, ok, strict=True)]
        words = np.array([b is not None for b in buckets])
        lo = np.array([TEMPO_BUCKET_BPM[b][0] if b else 0.0 for b in buckets], np.float32)
        hi = np.array([TEMPO_BUCKET_BPM[b][1] if b else 0.0 for b in buckets], np.float32)
        cfg = self.model.cfg

        def score(logits: jax.Array) -> np.ndarray:
            mass = np.asarray(closeness(cfg, logits, tgt, self.width) if self.width else
                              within_mass(cfg, logits, tgt, self.tolerance))
            if words.any():
                mass = np.where(words, np.asarray(range_mass(cfg, logits, lo, hi)), mass)
            return mass

        if self.combine == "min":
            mass = np.min([score(m) for m in _member_logits(self.model,
                                                            self._tokens(tokens_bs))], axis=0)
        else:
            mass = score(self.logits(tokens_bs))
        return np.where(ok | words, mass, np.nan).astype(np.float32)

    def bpm(self, tokens_bs: np.ndarray | jax.Array) -> np.ndarray:
        """The most likely BPM of each row, float32 [b]."""
        return np.asarray(predict_bpm(self.model.cfg, self.logits(tokens_bs)), np.float32)


class AudioTempoReward:
    """The tempo reward read from *audio*: ``score_audio(bpm, wav [b, n]) -> float[b]``
    re-tokenizes 16 kHz audio with a semantic tokenizer and scores those tokens with
    :class:`TempoReward`; ``reward(bpm, codes [b, t, K])`` decodes codec tokens first (with
    ``codec_dir``), so it can rank stage A's renderings
    (``Pipeline.generate(acoustic_best_of=N, acoustic_score=…)``).

    Stage S is chosen by the tempo it *writes*; this reads the tempo that survives stage A
    and the codec — what a listener (and the evaluation's beat tracker, which is not part of
    it) hears. The tempo model must have been trained on this tokenizer's tokens.
    ``weights_dir`` may also be a loaded :class:`TempoReward` (then ``tolerance``, ``width``
    and ``combine`` are its own).
    """

    def __init__(self, weights_dir: str | Path | TempoReward = "assets/small/tempo-ensemble",
                 semantic_dir: str | Path = "assets/small/semantic",
                 codec_dir: str | Path | None = None, tolerance: float = 0.08,
                 width: float = 0.0, combine: str = "mean"):
        from musicrl.semantic import load_semantic

        self.tempo = (weights_dir if isinstance(weights_dir, TempoReward) else
                      TempoReward(weights_dir, tolerance=tolerance, width=width, combine=combine))
        try:
            self.tokenizer, _ = load_semantic(semantic_dir)
        except FileNotFoundError as e:
            raise TempoError(str(e)) from None
        cfg = self.tempo.model.cfg
        if (self.tokenizer.vocab_size != cfg.vocab
                or abs(self.tokenizer.frame_rate - cfg.frame_rate) > 1e-6):
            raise TempoError(
                f"{weights_dir} reads {cfg.vocab} tokens at {cfg.frame_rate:g} Hz, the "
                f"tokenizer in {semantic_dir} writes {self.tokenizer.vocab_size} at "
                f"{self.tokenizer.frame_rate:g} Hz: pair a tempo model with the tokenizer "
                "whose tokens it was trained on")
        self.codec = None
        if codec_dir is not None:
            from musicrl.codec import load_codec

            self.codec, _ = load_codec(codec_dir)
            if int(self.codec.cfg.sample_rate) != 16_000:
                raise TempoError(f"{codec_dir}: the semantic tokenizer reads 16 kHz audio, the "
                                 f"codec writes {self.codec.cfg.sample_rate} Hz")

    def score_audio(self, bpm: Sequence[float | str] | np.ndarray, wav_bn: np.ndarray
                    ) -> np.ndarray:
        """Scores 16 kHz audio [b, n] against one target (BPM or prompt) per row."""
        wav = np.asarray(wav_bn, np.float32)
        if wav.ndim != 2:
            raise TempoError(f"audio must be [batch, samples], got shape {wav.shape}")
        if wav.shape[1] < (self.tempo.model.cfg.max_lag + 1) * 640:
            raise TempoError(f"{wav.shape[1] / 16_000:.2f} s of audio is shorter than the "
                             "longest beat period the tempo model reads")
        return self.tempo(bpm, self.tokenizer.tokenize(wav))

    def __call__(self, bpm: Sequence[float | str] | np.ndarray, codes_btq: np.ndarray | jax.Array
                 ) -> np.ndarray:
        if self.codec is None:
            raise TempoError("scoring codec tokens needs codec_dir (or call score_audio)")
        return self.score_audio(bpm, np.asarray(self.codec.decode(jnp.asarray(codes_btq))))
