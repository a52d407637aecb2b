"""A trained mode model (or ensemble) → a bf16 inference folder, kept only if bf16 loses nothing.

    python training/recipes/export_mode.py SRC DST [--root data/small] [--seconds 4,10]
        [--note TEXT] [--tol 0.005]

SRC is a weights folder or a work dir (``musicrl train mode … loop.workdir=…``). The bf16
copy is written to a temporary folder first and scored beside the float32 one on the valid
and test clips of ``--root`` (mode accuracy from the first 4 and 10 s of tokens, what
``musicrl eval mode`` reports), together with the largest change of P(mode) over those
clips at the longest start, per member for an ensemble (what ``@min`` ranks by). DST is
written (atomically, by ``save_mode``) only when no bf16 accuracy is more than ``--tol``
below the float32 one; its meta.json keeps SRC's training record and adds both evaluations.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from rewards.mode import (
    ModeEnsemble,
    ModeError,
    evaluate_mode,
    keyed_tokens,
    load_mode,
    mode_probs,
    save_mode,
)


def _member_mode_probs(model, seqs, frames: int, batch: int = 128) -> np.ndarray:
    """P(major), P(minor) of each member [members, n, 2] (one model: members = 1)."""
    x = np.stack([s[:frames] for s in seqs])
    out = []
    for i in range(0, len(x), batch):
        t = jnp.asarray(x[i:i + batch])
        logits = model.member_logits(t) if isinstance(model, ModeEnsemble) else model(t)[None]
        out.append(np.asarray(mode_probs(logits), np.float32).reshape(*logits.shape[:-1], 2))
    return np.concatenate(out, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--seconds", default="4,10", help="starts to score, comma-separated")
    ap.add_argument("--note", default="", help="a line for meta.json's 'note'")
    ap.add_argument("--tol", type=float, default=0.005,
                    help="the largest accuracy drop bf16 may show (default half a percent)")
    args = ap.parse_args()
    try:
        seconds = [float(x) for x in args.seconds.split(",")]
    except ValueError:
        ap.error(f"--seconds {args.seconds!r}: comma-separated numbers, e.g. 4,10")
    try:
        _export(args, seconds)
    except ModeError as e:
        raise SystemExit(f"export_mode: {e}") from None


def _export(args: argparse.Namespace, seconds: list[float]) -> None:
    model, meta = load_mode(args.src)
    with tempfile.TemporaryDirectory() as tmp:
        keep = {k: v for k, v in meta.items() if k not in ("component", "config")}
        keep["dtype"] = "bfloat16 (exported from float32 weights)"
        save_mode(Path(tmp) / "m", model, keep, dtype=jnp.bfloat16)
        half, _ = load_mode(Path(tmp) / "m")
        evals, worst, dp = {}, 0.0, {}
        for split in ("valid", "test"):
            f32 = evaluate_mode(model, args.root, split, seconds)["by_seconds"]
            b16 = evaluate_mode(half, args.root, split, seconds)["by_seconds"]
            evals[split] = {"float32": f32, "bfloat16": b16}
            for s in f32:
                worst = max(worst, f32[s]["mode_acc"] - b16[s]["mode_acc"])
                print(f"{split} {s:>2} s: mode {f32[s]['mode_acc']:.4f} (f32) "
                      f"{b16[s]['mode_acc']:.4f} (bf16)")
            seqs, _ = keyed_tokens(args.root, split, model.cfg.levels)
            frames = int(round(max(seconds) * model.cfg.frame_rate))
            seqs = [s for s in seqs if len(s) >= frames]
            dp[split] = float(np.max(np.abs(_member_mode_probs(model, seqs, frames)
                                            - _member_mode_probs(half, seqs, frames))))
            print(f"{split}: largest |ΔP(mode)| of a member over {len(seqs)} clips at "
                  f"{max(seconds):g} s: {dp[split]:.4f}")
    if worst > args.tol:
        raise SystemExit(f"bf16 loses {worst:.4f} of mode accuracy (> --tol {args.tol}); "
                         f"{args.dst} left as it was: keep the float32 weights")
    keep["eval_bf16_vs_f32"] = {"command": f"python training/recipes/export_mode.py {args.src} "
                                f"{args.dst} --root {args.root} --seconds {args.seconds}",
                                "by_split": evals, "max_abs_member_prob_change": dp,
                                "prob_change_at_seconds": max(seconds)}
    if args.note:
        keep["note"] = args.note
    save_mode(args.dst, model, keep, dtype=jnp.bfloat16)     # replaces the folder atomically
    print(f"wrote {args.dst} (bf16; largest accuracy drop {max(worst, 0.0):.4f})")


if __name__ == "__main__":
    main()
