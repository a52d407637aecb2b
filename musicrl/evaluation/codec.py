"""Codec evaluation on held-out clips: distances at 1..Q levels beside Opus, codebook usage.

What is measured (DESIGN §5.1, §12), per system (the codec at each number of
levels, Opus at each bitrate), on the same clips, as mean ± std over clips:

* ``mel`` — multi-scale log-mel L1 (:func:`musicrl.codec.losses.mel_loss`:
  natural-log mel magnitudes at (n_fft, hop, mels) = (512, 128, 40),
  (1024, 256, 80), (2048, 512, 128), averaged); the training loss, and the
  same function for the codec and for Opus;
* ``stft`` — multi-resolution STFT distance (spectral convergence + log-
  magnitude L1 at three resolutions, :func:`~musicrl.codec.losses.mr_stft_loss`);
* ``sisdr`` — scale-invariant SDR in dB (higher is better).

Codebook usage: the perplexity exp(H) of each level's code histogram over *all*
frames of the evaluated clips (one histogram per level, not per batch), against
the codebook size; below 50 % counts as collapse.

Bitrates: the codec sends ``levels · log2(codebook_size)`` bits per frame
(8 × 10 bits × 50 Hz = 4 kbps); Opus rows give the target and the measured rate
of the Ogg file. Outputs are compared unclipped, as the decoders return them.

Dimension legend: ``b`` batch, ``n`` samples, ``t`` frames, ``q`` levels,
``k`` codes per level.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.atomic import write_text_atomic
from musicrl.audio import load_audio, write_wav_atomic
from musicrl.codec.losses import mel_loss, mr_stft_loss, si_sdr
from musicrl.data.manifest import Clip
from musicrl.evaluation.opus import check_opus, opus_roundtrip

__all__ = ["evaluate_codec", "code_perplexity", "format_table", "write_report", "METRICS"]

METRICS = {
    "mel": "multi-scale log-mel L1 (mel_loss: 40/80/128 mels at n_fft 512/1024/2048), lower "
           "is better",
    "stft": "multi-resolution STFT distance (spectral convergence + log-magnitude L1, n_fft "
            "512/1024/2048), lower is better",
    "sisdr": "scale-invariant SDR in dB, higher is better",
}
NUM_EXAMPLES = 3


# ----------------------------------------------------------------------------
# Pure pieces
# ----------------------------------------------------------------------------

@jax.jit
def _distances(x_bn: jax.Array, y_bn: jax.Array) -> dict[str, jax.Array]:
    """Per-clip distances [b] (the losses average over their batch; vmap keeps each clip)."""
    one = jax.vmap(lambda x, y: jnp.stack([mel_loss(x[None], y[None]),
                                           mr_stft_loss(x[None], y[None])]))(x_bn, y_bn)
    return {"mel": one[:, 0], "stft": one[:, 1], "sisdr": si_sdr(x_bn, y_bn)}


@nnx.jit
def _encode(codec: nnx.Module, wav_bn: jax.Array) -> jax.Array:
    return codec.encode(wav_bn)


@nnx.jit
def _decode(codec: nnx.Module, codes_btq: jax.Array) -> jax.Array:
    return codec.decode(codes_btq)


def code_perplexity(counts_qk: np.ndarray) -> np.ndarray:
    """exp(entropy) of each level's code histogram [q, k] → [q]."""
    counts = np.asarray(counts_qk, np.float64)
    p = counts / np.maximum(counts.sum(-1, keepdims=True), 1.0)
    h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), -1)
    return np.exp(h)


def _batches(clips: Sequence[Clip], sr: int, hop: int, batch: int):
    """Clips grouped by length (a whole number of frames), in batches of ≤ ``batch``."""
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(clips):
        n = int(round(c.duration * sr)) // hop * hop
        if n < hop:
            raise ValueError(f"clip {c.id} is shorter than one codec frame ({c.duration} s)")
        groups.setdefault(n, []).append(i)
    for n, idx in groups.items():
        for s in range(0, len(idx), batch):
            yield n, idx[s:s + batch]


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def _pad_batch(x_bn: np.ndarray, batch: int) -> np.ndarray:
    """Repeats the first row up to ``batch`` rows (one compiled shape; extras are dropped)."""
    if len(x_bn) == batch:
        return x_bn
    return np.concatenate([x_bn, np.repeat(x_bn[:1], batch - len(x_bn), 0)])


def _summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max())}


# ----------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------

def evaluate_codec(codec: nnx.Module, clips: Sequence[Clip], root: str | Path,
                   levels: Sequence[int] = (1, 2, 4, 8), opus_kbps: Sequence[float] = (6, 12),
                   batch: int = 8, max_clips: int | None = None, out: str | Path | None = None,
                   meta: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Measures a codec beside Opus on clips it was never trained on.

    Args:
      codec: anything with the codec contract (``encode``, ``decode``, ``hop``,
        ``sample_rate``, ``frame_rate``, ``num_levels``, ``codebook_size``).
      clips: the clips to measure (normally the test split), paths relative to ``root``.
      levels: numbers of RVQ levels to decode with; those above ``codec.num_levels``
        are skipped (listed under ``skipped_levels``).
      opus_kbps: Opus bitrates (needs ffmpeg with libopus; ``()`` for none).
      batch: clips per jitted codec call.
      max_clips: measure only N clips, evenly spaced over ``clips`` (``None``: all).
      out: if given, :func:`write_report` writes report.json, report.md, PNG plots
        and example WAVs of the first clips there.
      meta: what the codec is (source, step, config), copied into the report.

    Returns:
      The report: ``systems`` (one row per codec level count and Opus bitrate, with
      kbps and mean/std/min/max of each metric), ``perplexity`` (per level, over all
      frames), ``checks``, ``data``, ``codec``, ``metrics``, ``seconds``.

    Raises:
      OpusUnavailable: Opus rows were asked for and ffmpeg/libopus is missing.
    """
    clips = list(clips)
    if max_clips is not None and max_clips < len(clips):
        # Evenly spaced, not the first N: manifests are ordered by style and piece.
        pick = np.unique(np.linspace(0, len(clips) - 1, max_clips).round().astype(int))
        clips = [clips[i] for i in pick]
    if not clips:
        raise ValueError("no clips to evaluate: is the split empty? (musicrl data stats)")
    sr, hop, q_max, k = codec.sample_rate, codec.hop, codec.num_levels, codec.codebook_size
    used_levels = sorted({int(q) for q in levels if 1 <= int(q) <= q_max})
    skipped = sorted({int(q) for q in levels} - set(used_levels))
    if not used_levels:
        raise ValueError(f"none of levels {list(levels)} is within 1..{q_max}")
    ffmpeg = check_opus() if opus_kbps else None
    root = Path(root)

    names = [f"codec q{q}" for q in used_levels] + [f"opus {b:g}k" for b in opus_kbps]
    per: dict[str, dict[str, list[float]]] = {s: {m: [] for m in METRICS} for s in names}
    opus_rate: dict[str, list[float]] = {f"opus {b:g}k": [] for b in opus_kbps}
    counts_qk = np.zeros((q_max, k), np.int64)
    examples: dict[str, dict[str, np.ndarray]] = {}
    seconds = {"load": 0.0, "codec_encode": 0.0, "codec_decode": 0.0, "opus": 0.0,
               "metrics": 0.0}
    audio_seconds = 0.0

    todo = list(_batches(clips, sr, hop, batch))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(clips), desc="eval codec", unit="clip")
    for n, idx in todo:
        t0 = time.perf_counter()
        x = np.stack([_fit(load_audio(root / clips[i].path, sr), n) for i in idx])
        audio_seconds += x.size / sr
        xb = jnp.asarray(_pad_batch(x, batch))
        t1 = time.perf_counter()
        seconds["load"] += t1 - t0
        codes = np.asarray(jax.block_until_ready(_encode(codec, xb)))
        seconds["codec_encode"] += time.perf_counter() - t1
        real = codes[: len(idx)]
        for lvl in range(q_max):
            counts_qk[lvl] += np.bincount(real[..., lvl].ravel(), minlength=k)[:k]
        outputs: dict[str, np.ndarray] = {}
        for q in used_levels:
            t1 = time.perf_counter()
            y = jax.block_until_ready(_decode(codec, jnp.asarray(codes[..., :q])))
            seconds["codec_decode"] += time.perf_counter() - t1
            outputs[f"codec q{q}"] = np.asarray(y)
        for b in opus_kbps:
            t1 = time.perf_counter()
            ys = []
            for row in x:
                y, rate = opus_roundtrip(row, b, sr, ffmpeg=ffmpeg)
                ys.append(y)
                opus_rate[f"opus {b:g}k"].append(rate)
            seconds["opus"] += time.perf_counter() - t1
            outputs[f"opus {b:g}k"] = _pad_batch(np.stack(ys), batch)
        t1 = time.perf_counter()
        for name, y in outputs.items():
            d = jax.device_get(_distances(xb, jnp.asarray(y)))
            for m in METRICS:
                per[name][m].extend(float(v) for v in d[m][: len(idx)])
        seconds["metrics"] += time.perf_counter() - t1
        for j, i in enumerate(idx):
            if i < NUM_EXAMPLES:
                examples[clips[i].id] = {"original": x[j],
                                         **{s: y[j] for s, y in outputs.items()}}
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()

    bits = math.log2(k)
    systems = []
    for q in used_levels:
        name = f"codec q{q}"
        systems.append({"name": name, "kind": "codec", "levels": q,
                        "kbps": q * bits * codec.frame_rate / 1000,
                        **{m: _summary(per[name][m]) for m in METRICS}})
    for b in opus_kbps:
        name = f"opus {b:g}k"
        systems.append({"name": name, "kind": "opus", "kbps": float(b),
                        "measured_kbps": float(np.mean(opus_rate[name])),
                        **{m: _summary(per[name][m]) for m in METRICS}})
    ppl = code_perplexity(counts_qk)
    perplexity = [{"level": lvl + 1, "perplexity": float(ppl[lvl]),
                   "fraction": float(ppl[lvl] / k), "used_codes": int((counts_qk[lvl] > 0).sum()),
                   "codebook_size": k, "frames": int(counts_qk[lvl].sum())}
                  for lvl in range(q_max)]
    report = {
        "codec": {**(meta or {}), "num_levels": q_max, "codebook_size": k,
                  "frame_rate": codec.frame_rate, "sample_rate": sr},
        "data": {"root": str(root), "clips": len(clips),
                 "splits": sorted({c.split for c in clips}), "audio_seconds": audio_seconds,
                 "clip_ids": [c.id for c in clips]},
        "metrics": METRICS,
        "levels": used_levels,
        "skipped_levels": skipped,
        "systems": systems,
        "perplexity": perplexity,
        "checks": _checks(systems, perplexity),
        "seconds": {s: round(v, 2) for s, v in seconds.items()},
    }
    if out is not None:
        report["files"] = write_report(report, out, examples=examples, sr=sr)
    return report


def _checks(systems: list[dict], perplexity: list[dict]) -> dict[str, bool]:
    """The issue's pass/fail lines: the codec at its most levels vs each Opus row on mel."""
    codec_rows = [s for s in systems if s["kind"] == "codec"]
    top = max(codec_rows, key=lambda s: s["levels"])
    checks = {}
    for s in systems:
        if s["kind"] == "opus":
            checks[f"mel: {top['name']} < {s['name']}"] = top["mel"]["mean"] < s["mel"]["mean"]
    checks["perplexity >= 50% of codebook at every level"] = all(
        p["fraction"] >= 0.5 for p in perplexity)
    return checks


# ----------------------------------------------------------------------------
# Report: table, JSON, plots, examples
# ----------------------------------------------------------------------------

def format_table(report: dict[str, Any]) -> str:
    """Markdown tables: distances per system, then codebook perplexity per level."""
    lines = ["| system | kbps | log-mel L1 ↓ | MR-STFT ↓ | SI-SDR (dB) ↑ |",
             "|---|---:|---:|---:|---:|"]
    for s in report["systems"]:
        kbps = f"{s['kbps']:g}"
        if "measured_kbps" in s:
            kbps += f" ({s['measured_kbps']:.1f})"
        cells = [f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" if m != "sisdr"
                 else f"{s[m]['mean']:.2f} ± {s[m]['std']:.2f}" for m in METRICS]
        lines.append(f"| {s['name']} | {kbps} | " + " | ".join(cells) + " |")
    lines += ["", "| level | perplexity | of codebook | codes used |", "|---:|---:|---:|---:|"]
    for p in report["perplexity"]:
        lines.append(f"| {p['level']} | {p['perplexity']:.1f} | {100 * p['fraction']:.1f} % "
                     f"| {p['used_codes']} / {p['codebook_size']} |")
    lines += [""] + [f"- {'PASS' if ok else 'FAIL'}: {name}"
                     for name, ok in report["checks"].items()]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: str | Path,
                 examples: dict[str, dict[str, np.ndarray]] | None = None,
                 sr: int = 16_000) -> dict[str, str]:
    """Writes report.json, report.md, distances.png, perplexity.png and example WAVs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "report.json"), "markdown": str(out / "report.md"),
             "distances_png": str(out / "distances.png"),
             "perplexity_png": str(out / "perplexity.png")}
    if examples:
        for clip_id, systems in examples.items():
            for name, wav in systems.items():
                write_wav_atomic(out / "examples" / f"{clip_id}_{name.replace(' ', '_')}.wav",
                                 wav, sr)
        files["examples"] = str(out / "examples")
    _plot_distances(report, out / "distances.png")
    _plot_perplexity(report, out / "perplexity.png")
    head = [f"# Codec evaluation: {report['codec'].get('source', 'codec')}", ""]
    if report["codec"].get("command"):
        head += ["```", f"$ {report['codec']['command']}", "```", ""]
    head += [f"{report['data']['clips']} clips ({report['data']['audio_seconds']:.0f} s) of "
             f"{', '.join(report['data']['splits'])} under {report['data']['root']}; codec step "
             f"{report['codec'].get('steps', '?')}.", ""]
    write_text_atomic(out / "report.md", "\n".join(head) + "\n" + format_table(report) + "\n")
    write_text_atomic(out / "report.json", json.dumps({**report, "files": files}, indent=2) + "\n")
    return files


def _plot_distances(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["systems"]
    labels = [f"{s['name']}\n{s['kbps']:g} kbps" for s in systems]
    colors = ["tab:blue" if s["kind"] == "codec" else "tab:orange" for s in systems]
    fig, axes = plt.subplots(1, 3, figsize=(4.2 * 3, 4.2))
    titles = {"mel": "log-mel L1 (lower is better)", "stft": "MR-STFT (lower is better)",
              "sisdr": "SI-SDR dB (higher is better)"}
    for ax, m in zip(axes, METRICS, strict=True):
        mean = [s[m]["mean"] for s in systems]
        std = [s[m]["std"] for s in systems]
        ax.bar(range(len(systems)), mean, yerr=std, color=colors, capsize=3)
        ax.set_xticks(range(len(systems)), labels, fontsize=7)
        ax.set_title(titles[m], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    step = report["codec"].get("steps")
    fig.suptitle(f"codec{'' if step is None else f' (step {step})'} vs Opus on "
                 f"{report['data']['clips']} held-out clips; bars: mean ± std", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_perplexity(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = report["perplexity"]
    k = p[0]["codebook_size"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.bar([r["level"] for r in p], [r["perplexity"] for r in p], color="tab:blue")
    ax.axhline(0.5 * k, color="tab:red", ls="--", label=f"50 % of codebook ({0.5 * k:g})")
    ax.axhline(k, color="gray", ls=":", label=f"codebook size ({k})")
    ax.set_xlabel("RVQ level")
    ax.set_ylabel("perplexity of codes (all frames)")
    ax.set_xticks([r["level"] for r in p])
    ax.set_ylim(0, 1.2 * k)
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    ax.set_title(f"codebook usage over {p[0]['frames']} frames", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
