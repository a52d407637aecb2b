"""What do semantic tokens keep? A pitch-class probe against the stored note events.

The target of a 40 ms frame is the set of pitch classes sounding in it (the
binarized :func:`musicrl.data.events.pitch_class_roll` at 25 Hz, drums
excluded): 12 bits. The probe is a lookup table: for each token, the majority
value of each bit over the train-split frames with that token (a token never
seen in training predicts the global majority). It is scored on another split
with

* ``pc_accuracy`` — mean over the 12 pitch classes of the binary accuracy;
* ``exact_match`` — fraction of frames whose whole 12-bit set is right;
* ``pc_f1`` — mean over pitch classes of F1 of the "active" class (0 for a
  predictor that never says active, which the accuracies hide),

and, as a rhythm check, the same lookup probe for one bit per frame: does a note
(drums included) start in it? (``onset_accuracy``, ``onset_f1``). Each is given
for three predictors: the tokens themselves (``semantic``), the global
per-pitch-class majority (``majority``), and the same lookup probe on random
tokens (``random``: the same vocabulary, one uniform token per frame, in
training and test alike) — what a table of that size learns from no signal.
Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.data.events import pitch_class_roll

__all__ = ["frame_targets", "onset_targets", "fit_probe", "predict_probe", "score", "run_probe",
           "format_probe", "plot_probe"]

PREDICTORS = ("semantic", "majority", "random")


def frame_targets(events: np.ndarray, n_frames: int, frame_rate: float = 25.0) -> np.ndarray:
    """Active pitch classes per frame, [n_frames, 12] bool."""
    return pitch_class_roll(events, frame_rate, n_frames) > 0


def onset_targets(events: np.ndarray, n_frames: int, frame_rate: float = 25.0) -> np.ndarray:
    """Whether any note (drums included) starts in each frame, [n_frames, 1] bool."""
    out = np.zeros((n_frames, 1), bool)
    idx = np.floor(np.asarray(events["onset"], np.float64) * frame_rate).astype(np.int64)
    out[idx[(idx >= 0) & (idx < n_frames)], 0] = True
    return out


def fit_probe(tokens_n: np.ndarray, targets_n12: np.ndarray, vocab_size: int
              ) -> np.ndarray:
    """The lookup table [vocab_size, 12] bool: per token, the per-bit majority.

    Ties and unseen tokens take the global majority of the bit.
    """
    tokens_n = np.asarray(tokens_n, np.int64)
    y = np.asarray(targets_n12, np.float64)
    counts = np.bincount(tokens_n, minlength=vocab_size).astype(np.float64)
    ones = np.zeros((vocab_size, y.shape[1]))
    np.add.at(ones, tokens_n, y)
    global_major = y.mean(0) > 0.5
    frac = ones / np.maximum(counts, 1.0)[:, None]
    table = np.where(frac > 0.5, True, np.where(frac < 0.5, False, global_major[None, :]))
    table[counts == 0] = global_major
    return table


def predict_probe(table_v12: np.ndarray, tokens_n: np.ndarray) -> np.ndarray:
    return table_v12[np.asarray(tokens_n, np.int64)]


def score(pred_n12: np.ndarray, targets_n12: np.ndarray) -> dict[str, float]:
    """pc_accuracy, exact_match and pc_f1 of boolean predictions."""
    pred, y = np.asarray(pred_n12, bool), np.asarray(targets_n12, bool)
    tp = (pred & y).sum(0)
    fp = (pred & ~y).sum(0)
    fn = (~pred & y).sum(0)
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return {"pc_accuracy": float((pred == y).mean()),
            "exact_match": float((pred == y).all(1).mean()),
            "pc_f1": float(f1.mean())}


def _stack(tokens: Sequence[np.ndarray], events: Sequence[np.ndarray], frame_rate: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Tokens [n] and targets [n, 13]: 12 pitch classes, then the onset bit."""
    toks = [np.asarray(t).reshape(-1) for t in tokens]
    ys = [np.concatenate([frame_targets(e, len(t), frame_rate),
                          onset_targets(e, len(t), frame_rate)], 1)
          for t, e in zip(toks, events, strict=True)]
    if not toks:
        return np.zeros((0,), np.int64), np.zeros((0, 13), bool)
    return np.concatenate(toks), np.concatenate(ys)


def _scores(pred_n13: np.ndarray, y_n13: np.ndarray) -> dict[str, float]:
    onset = score(pred_n13[:, 12:], y_n13[:, 12:])
    return {**score(pred_n13[:, :12], y_n13[:, :12]),
            "onset_accuracy": onset["pc_accuracy"], "onset_f1": onset["pc_f1"]}


def run_probe(train_tokens: Sequence[np.ndarray], train_events: Sequence[np.ndarray],
              eval_tokens: Sequence[np.ndarray], eval_events: Sequence[np.ndarray], *,
              vocab_size: int, seed: int = 0, split: str = "test", frame_rate: float = 25.0
              ) -> dict[str, Any]:
    """Fits the probe on the train clips and scores it on the eval clips.

    Args:
      train_tokens, eval_tokens: per clip, tokens [t] (int).
      train_events, eval_events: per clip, its note events (EVENT_DTYPE).
      vocab_size: the token vocabulary (also that of the random control).
      seed: seed of the random-token control.

    Returns:
      {"semantic" | "majority" | "random": scores, "frames": {...}, ...}.
    """
    x_tr, y_tr = _stack(train_tokens, train_events, frame_rate)
    x_ev, y_ev = _stack(eval_tokens, eval_events, frame_rate)
    if len(x_tr) == 0 or len(x_ev) == 0:
        raise ValueError("the probe needs train and eval frames with note events "
                         f"(got {len(x_tr)} train, {len(x_ev)} eval)")
    out: dict[str, Any] = {"split": split, "vocab_size": int(vocab_size),
                           "frames": {"train": int(len(x_tr)), split: int(len(x_ev))},
                           "active_fraction": float(y_ev[:, :12].mean()),
                           "onset_fraction": float(y_ev[:, 12].mean())}
    out["semantic"] = _scores(predict_probe(fit_probe(x_tr, y_tr, vocab_size), x_ev), y_ev)
    out["majority"] = _scores(np.broadcast_to(y_tr.mean(0) > 0.5, y_ev.shape), y_ev)
    rng = np.random.default_rng([seed, 12])
    r_tr = rng.integers(0, vocab_size, len(x_tr))
    r_ev = rng.integers(0, vocab_size, len(x_ev))
    out["random"] = _scores(predict_probe(fit_probe(r_tr, y_tr, vocab_size), r_ev), y_ev)
    used = np.bincount(x_ev, minlength=vocab_size) / len(x_ev)
    nz = used[used > 0]
    out["token_perplexity"] = float(np.exp(-(nz * np.log(nz)).sum()))
    out["tokens_used"] = int((used > 0).sum())
    return out


def format_probe(probe: dict[str, Any]) -> str:
    """A table: one row per predictor."""
    split = probe["split"]
    lines = [f"pitch-class probe on the {split} split ({probe['frames'][split]} frames of "
             f"40 ms; probe table from {probe['frames']['train']} train frames; "
             f"{probe['vocab_size']} tokens)",
             f"{'predictor':<12}{'pc_accuracy':>13}{'exact_match':>13}{'pc_f1':>9}"
             f"{'onset_acc':>11}{'onset_f1':>10}"]
    for name in PREDICTORS:
        s = probe[name]
        lines.append(f"{name:<12}{s['pc_accuracy']:>13.4f}{s['exact_match']:>13.4f}"
                     f"{s['pc_f1']:>9.4f}{s['onset_accuracy']:>11.4f}{s['onset_f1']:>10.4f}")
    lines.append(f"token perplexity on {split}: {probe['token_perplexity']:.1f} "
                 f"({probe['tokens_used']} tokens used)")
    return "\n".join(lines)


def plot_probe(probe: dict[str, Any], path: str | Path) -> None:
    """Grouped bars of the three metrics for the three predictors (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("pc_accuracy", "exact_match", "pc_f1", "onset_accuracy", "onset_f1")
    fig, ax = plt.subplots(figsize=(8.0, 3.6), dpi=100)
    width = 0.26
    for i, name in enumerate(PREDICTORS):
        vals = [probe[name][m] for m in metrics]
        bars = ax.bar(np.arange(len(metrics)) + (i - 1) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(np.arange(len(metrics)), metrics)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"pitch-class probe, {probe['split']} split, {probe['vocab_size']} tokens")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
