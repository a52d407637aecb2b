"""Reward throughput: MuLan score, quality (MOS), diversity embedding and the tempo reward
(on semantic tokens, no audio needed), in clips/s, beside
the generator's own clips/s, so one sees whether an RL step is dominated by sampling.

    python benchmarks/bench_rewards.py [--seconds 10] [--batch 16] [--repeats 3]
        [--model assets/small]

Prints a table; asserts nothing. Each model is called once to compile, then timed
(median of --repeats) on a batch of real test clips (or noise if no corpus).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def _clips(root: str, n: int, samples: int) -> np.ndarray:
    try:
        from musicrl.audio import load_audio
        from musicrl.data.manifest import load_clips

        clips = load_clips(root, splits=["test"])[:n]
        wavs = [load_audio(Path(root) / c.path)[:samples] for c in clips]
        return np.stack([np.pad(w, (0, samples - len(w))) for w in wavs])
    except Exception:  # no corpus: the speed does not depend on the content
        return np.random.default_rng(0).standard_normal((n, samples)).astype(np.float32) * 0.1


def _semantic(root: str, n: int, frames: int) -> np.ndarray:
    try:
        from musicrl.data.tokens import load_tokens

        toks = list(load_tokens(Path(root) / "tokens", split="test").values())[:n]
        return np.stack([np.pad(s[:frames], (0, frames - len(s[:frames]))) for s, _ in toks])
    except Exception:  # no token cache: the speed does not depend on the content
        return np.random.default_rng(0).integers(0, 512, (n, frames)).astype(np.int32)


def _time(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--assets", default="assets/small")
    ap.add_argument("--model", default="assets/small", help="generator bundle ('' to skip)")
    args = ap.parse_args()
    wav = _clips(args.root, args.batch, int(args.seconds * 16_000))
    prompts = ["a calm piano piece in a minor key"] * len(wav)
    rows = []

    from rewards.diversity import DiversityReward
    from rewards.mulan_score import MulanReward
    from rewards.quality import QualityReward
    from rewards.tempo import TempoReward

    sem = _semantic(args.root, len(wav), int(args.seconds * 25))
    bpm = np.full(len(wav), 120.0)

    for name, make, call in (
            ("MuLan score", lambda: MulanReward(f"{args.assets}/mulan"),
             lambda r: r(prompts, wav)),
            ("quality (MOS)", lambda: QualityReward(f"{args.assets}/quality"),
             lambda r: r(prompts, wav)),
            ("diversity embedding", lambda: DiversityReward(f"{args.assets}/diversity"),
             lambda r: r.embed(wav)),
            ("tempo (semantic tokens)", lambda: TempoReward(f"{args.assets}/tempo"),
             lambda r: r(bpm, sem))):
        try:
            r = make()
        except Exception as e:  # noqa: BLE001 - a missing asset is reported, not fatal
            print(f"skip {name}: {e}")
            continue
        t = _time(lambda r=r, call=call: call(r), args.repeats)
        rows.append((name, len(wav) / t, t))
    gen = None
    if args.model and Path(args.model, "lm-acoustic").exists():
        from musicrl.pipeline import Pipeline

        pipe = Pipeline.from_pretrained(args.model)
        t = _time(lambda: pipe.generate(prompts, seconds=args.seconds, guidance=3.0),
                  args.repeats)
        gen = len(wav) / t
    print(f"batch {len(wav)} clips of {args.seconds:g} s on this CPU (median of "
          f"{args.repeats})\n")
    print("| model | clips/s | s per batch | generation time / scoring time |")
    print("|---|---|---|---|")
    for name, rate, t in rows:
        ratio = f"{rate / gen:.0f}×" if gen else "—"
        print(f"| {name} | {rate:.1f} | {t:.3f} | {ratio} |")
    if gen:
        print(f"| generator (CFG γ=3, for reference) | {gen:.2f} | {len(wav) / gen:.3f} | 1× |")


if __name__ == "__main__":
    main()
