"""Held-out evaluation of the quality predictor and the diversity embedder (DESIGN §12).

``musicrl eval quality`` — test-split clips (never trained on) × the *held-out*
settings of every degradation family (:mod:`rewards.degrade`; never trained on
either). Per family and overall:

* Spearman ρ between the predicted score and −severity over the clean crops and
  their held-out versions, pooled over clips ("pooled"), and the mean over clips
  of the same ρ computed within each clip ("within clip": the ordering of one
  clip's versions, which is what a reward compares);
* the % of (clean, degraded version of the same clip) pairs where the clean
  crop scores higher.

``musicrl eval diversity`` — for each test clip, its first chunk is the query
and its last chunk (non-overlapping) must be the nearest among itself and the
last chunks of 100 distractor clips of *other pieces* (clips of one piece can
sound nearly the same); chance is 1/101. The same retrieval with distractors
from any clip, and with an untrained baseline embedding (the clip's mean
normalised log-mel), are reported beside it.

Both write ``report.json`` and a PNG to the output folder and return the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from musicrl.atomic import write_text_atomic
from rewards import degrade

__all__ = ["evaluate_quality", "format_quality_table", "evaluate_diversity",
           "format_diversity_table", "chunk_retrieval", "fixed_chunk_pairs", "read_clips"]

SAMPLE_RATE = 16_000


# ----------------------------------------------------------------------------
# Quality
# ----------------------------------------------------------------------------

def _spearman(score: np.ndarray, severity: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(score) == 0 or np.ptp(severity) == 0:
        return 0.0
    return float(spearmanr(score, -severity).statistic)


def evaluate_quality(model: Any, root: str, *, codec: Any, split: str = "test",
                     crop_seconds: float = 3.0, max_clips: int | None = None, seed: int = 0,
                     cache: str | None = None, out: str | Path | None = None,
                     meta: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Scores held-out clips and their held-out degradations (module docstring).

    Args:
      model: a :class:`rewards.quality.QualityModel`; codec: the codec for the codec
        families (None skips them).
      root, split: the clips; max_clips: evenly spaced subset.
      crop_seconds: length of the fixed crop scored per clip.
      cache: npz cache of the degraded set; out: where report.json / quality.png go.
    """
    from musicrl.data.manifest import load_clips
    from rewards.quality import score_batched

    clips = load_clips(root, splits=[split])
    if len(clips) < 2:
        raise ValueError(f"{root} has {len(clips)} {split} clips; at least 2 are needed")
    if max_clips and len(clips) > max_clips:
        clips = [clips[i] for i in np.linspace(0, len(clips) - 1, max_clips).astype(int)]
    fams = [f for f in degrade.FAMILIES
            if codec is not None or f not in degrade.CODEC_FAMILIES]
    ss = degrade.settings("test", fams)
    n = max(320, round(crop_seconds * SAMPLE_RATE / 320) * 320)
    data = degrade.build_degraded_set(root, clips, crop_samples=n, setting_list=ss, codec=codec,
                                      seed=seed, cache=cache, progress=progress)
    clean = score_batched(model, data.clean)
    scores = {s.key: score_batched(model, data.versions[s.key]) for s in ss}

    def block(settings: list[degrade.Setting]) -> dict[str, float]:
        sc = np.concatenate([clean, *[scores[s.key] for s in settings]])
        sev = np.concatenate([np.zeros(len(clean))]
                             + [np.full(len(clean), s.severity) for s in settings])
        per_clip = np.stack([clean, *[scores[s.key] for s in settings]], 1)  # [N, 1 + k]
        sev_clip = np.asarray([0.0, *[s.severity for s in settings]])
        within = [_spearman(row, sev_clip) for row in per_clip]
        deg = per_clip[:, 1:]
        return {"spearman_pooled": _spearman(sc, sev),
                "spearman_within_clip": float(np.mean(within)),
                "clean_above_degraded": float(np.mean(clean[:, None] > deg)),
                "pairs": int(deg.size)}

    families = {f: block([s for s in ss if s.family == f]) for f in fams}
    report = {
        "data": {"root": root, "split": split, "clips": len(clips), "crop_seconds": n / 16_000,
                 "settings": [s.key for s in ss], "seed": seed},
        "families": families,
        "overall": block(ss),
        "mean_of_families": {k: float(np.mean([families[f][k] for f in fams]))
                             for k in ("spearman_pooled", "spearman_within_clip",
                                       "clean_above_degraded")},
        "scores": {"clean": _stats(clean),
                   **{s.key: {**_stats(scores[s.key]), "severity": s.severity} for s in ss}},
        "meta": meta or {},
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
        _plot_quality(report, fams, ss, out / "quality.png")
    return report


def _stats(x: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(x)), "std": float(np.std(x))}


def _plot_quality(report: dict[str, Any], fams: list[str], ss: list[degrade.Setting],
                  path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    c = report["scores"]["clean"]
    for f in fams:
        pts = sorted((s.severity, report["scores"][s.key]) for s in ss if s.family == f)
        x = [0.0] + [p[0] for p in pts]
        y = [c["mean"]] + [p[1]["mean"] for p in pts]
        e = [c["std"]] + [p[1]["std"] for p in pts]
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3,
                    label=f"{f} (ρ={report['families'][f]['spearman_pooled']:.2f})")
    ax.set_xlabel("severity of the held-out setting (0 = clean)")
    ax.set_ylabel("predicted MOS (mean ± std over clips)")
    ax.set_title(f"quality predictor on {report['data']['clips']} {report['data']['split']} clips")
    ax.set_ylim(1, 5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_quality_table(report: dict[str, Any]) -> str:
    """Plain-text table: per family and overall."""
    rows = [("family", "held-out settings", "ρ pooled", "ρ within clip", "clean > degraded")]
    settings = report["data"]["settings"]
    for f, m in report["families"].items():
        vals = ", ".join(k.split("@")[1] for k in settings if k.split("@")[0] == f)
        rows.append((f, vals, f"{m['spearman_pooled']:.3f}", f"{m['spearman_within_clip']:.3f}",
                     f"{100 * m['clean_above_degraded']:.1f} %"))
    o, mf = report["overall"], report["mean_of_families"]
    rows.append(("overall (pooled)", f"{len(settings)} settings", f"{o['spearman_pooled']:.3f}",
                 f"{o['spearman_within_clip']:.3f}", f"{100 * o['clean_above_degraded']:.1f} %"))
    rows.append(("mean of families", "", f"{mf['spearman_pooled']:.3f}",
                 f"{mf['spearman_within_clip']:.3f}", f"{100 * mf['clean_above_degraded']:.1f} %"))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows)


# ----------------------------------------------------------------------------
# Diversity
# ----------------------------------------------------------------------------

def read_clips(root: str, clips) -> list[np.ndarray]:
    """Whole clips as float16 arrays (mono, 16 kHz)."""
    import soundfile as sf

    from musicrl.audio import AudioError

    out = []
    for c in clips:
        path = Path(root) / c.path
        try:
            x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioError(f"{path}: cannot read audio ({e}); rebuild the corpus with "
                             "`musicrl data build`") from e
        if sr != SAMPLE_RATE:
            raise AudioError(f"{path}: {sr} Hz, expected {SAMPLE_RATE}; re-import it with "
                             "`musicrl data import`")
        out.append(x.mean(axis=1).astype(np.float16))
    return out


def fixed_chunk_pairs(audio: list[np.ndarray], chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The first and the last ``chunk`` samples of each clip (non-overlapping if 2·chunk ≤ n)."""
    a, b = [], []
    for x in audio:
        x = x.astype(np.float32)
        if len(x) < 2 * chunk:
            x = np.pad(x, (0, 2 * chunk - len(x)))
        a.append(x[:chunk])
        b.append(x[-chunk:])
    return np.stack(a), np.stack(b)


def chunk_retrieval(ea: np.ndarray, eb: np.ndarray, pieces: list[str] | None,
                    distractors: int, seed: int = 0) -> dict[str, float]:
    """Top-1 retrieval of clip i's other chunk among itself + ``distractors`` other clips' chunks.

    Distractors come from clips of *other pieces* when ``pieces`` is given and
    enough exist, else from all other clips. Returns the accuracy, chance
    (mean 1 / pool size) and the mean pool size.
    """
    rng = np.random.default_rng(seed)
    n = len(ea)
    sims = ea @ eb.T
    hits, pools = [], []
    for i in range(n):
        others = [j for j in range(n) if j != i and (pieces is None or pieces[j] != pieces[i])]
        if len(others) < distractors:
            others = [j for j in range(n) if j != i]
        pick = rng.choice(others, min(distractors, len(others)), replace=False)
        hits.append(bool(sims[i, i] > np.max(sims[i, pick])))
        pools.append(len(pick) + 1)
    return {"top1": float(np.mean(hits)), "chance": float(np.mean([1.0 / p for p in pools])),
            "pool": float(np.mean(pools))}


def _mel_baseline(wav_bn: np.ndarray) -> np.ndarray:
    """Untrained reference embedding: mean normalised log-mel (64 bands), unit length."""
    import jax.numpy as jnp

    from musicrl.spectral import log_mel

    out = []
    for i in range(0, len(wav_bn), 32):
        x = np.asarray(log_mel(jnp.asarray(wav_bn[i:i + 32]), n_mels=64))
        x = x - x.mean(axis=(1, 2), keepdims=True)
        out.append(x.mean(1))
    e = np.concatenate(out)
    e = e - e.mean(0)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-8)


def evaluate_diversity(model: Any, root: str, *, split: str = "test", chunk_seconds: float = 3.0,
                       distractors: int = 100, seed: int = 0, out: str | Path | None = None,
                       meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chunk retrieval on held-out clips (module docstring)."""
    from musicrl.data.manifest import load_clips
    from rewards.diversity import embed_batched

    clips = load_clips(root, splits=[split])
    if len(clips) < 2:
        raise ValueError(f"{root} has {len(clips)} {split} clips; at least 2 are needed")
    chunk = round(chunk_seconds * SAMPLE_RATE)
    a, b = fixed_chunk_pairs(read_clips(root, clips), chunk)
    pieces = [c.piece for c in clips]
    ea, eb = embed_batched(model, a), embed_batched(model, b)
    base_a, base_b = _mel_baseline(a), _mel_baseline(b)
    k = min(distractors, len(clips) - 1)
    sims = ea @ eb.T
    off = ~np.eye(len(clips), dtype=bool)
    same_piece = np.asarray(pieces)[:, None] == np.asarray(pieces)[None, :]
    report = {
        "data": {"root": root, "split": split, "clips": len(clips), "pieces": len(set(pieces)),
                 "chunk_seconds": chunk / SAMPLE_RATE, "distractors": k, "seed": seed},
        "retrieval_other_pieces": chunk_retrieval(ea, eb, pieces, k, seed),
        "retrieval_any_clip": chunk_retrieval(ea, eb, None, k, seed),
        "retrieval_reverse": chunk_retrieval(eb, ea, pieces, k, seed),
        "baseline_mean_logmel": chunk_retrieval(base_a, base_b, pieces, k, seed),
        "cosine": {"same_clip": float(np.mean(np.diag(sims))),
                   "same_piece_other_clip": float(np.mean(sims[off & same_piece]))
                   if np.any(off & same_piece) else None,
                   "other_piece": float(np.mean(sims[~same_piece]))},
        "meta": meta or {},
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
        _plot_diversity(sims, same_piece, out / "diversity.png")
    return report


def _plot_diversity(sims: np.ndarray, same_piece: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    off = ~np.eye(len(sims), dtype=bool)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(-1, 1, 81)
    ax.hist(np.diag(sims), bins, alpha=0.6, density=True, label="other chunk, same clip")
    if np.any(off & same_piece):
        ax.hist(sims[off & same_piece], bins, alpha=0.5, density=True,
                label="chunk of another clip, same piece")
    ax.hist(sims[~same_piece], bins, alpha=0.5, density=True, label="chunk of another piece")
    ax.set_xlabel("cosine similarity of embeddings")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_diversity_table(report: dict[str, Any]) -> str:
    rows = [("retrieval (top-1)", "accuracy", "chance", "pool")]
    for key, name in (("retrieval_other_pieces", "distractors from other pieces"),
                      ("retrieval_reverse", "  reverse (last → first chunk)"),
                      ("retrieval_any_clip", "distractors from any clip"),
                      ("baseline_mean_logmel", "baseline: mean log-mel, other pieces")):
        m = report[key]
        rows.append((name, f"{100 * m['top1']:.1f} %", f"{100 * m['chance']:.2f} %",
                     f"{m['pool']:.0f}"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    table = "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows)
    c = report["cosine"]
    spc = "n/a" if c["same_piece_other_clip"] is None else f"{c['same_piece_other_clip']:.3f}"
    return (table + f"\nmean cosine: same clip {c['same_clip']:.3f}, same piece {spc}, "
            f"other piece {c['other_piece']:.3f}")
