"""How long the bundled corpus takes to build here, and how fast the loader reads it.

A program, not a test: it prints tables and never asserts a time.

    python benchmarks/bench_data_build.py                 # builds `small` into a fresh folder
    python benchmarks/bench_data_build.py --preset tiny   # a quick look

The build runs from scratch (a new folder, so nothing is reused), with one worker
process per core. Then the loader benchmark runs on the result, compared with the
rate at which `small` language-model training consumes clips: DESIGN §2 measured
~2.3 k tokens/s for a 3.7 M-parameter transformer on this machine; a 10 s clip
is 250 semantic tokens (25 Hz) + 12 MuLan tokens, so ≈ 9 clips/s at most.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_loader  # noqa: E402

from musicrl.config import resolve  # noqa: E402
from musicrl.data.build import build_corpus  # noqa: E402
from musicrl.data.config import DataConfig  # noqa: E402
from musicrl.data.manifest import load_clips  # noqa: E402

LM_TOKENS_PER_S = 2300.0
TOKENS_PER_CLIP = 10 * 25 + 12


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="small", choices=("tiny", "small", "base"))
    p.add_argument("--root", default=None,
                   help="build here (default: a fresh temporary folder, deleted afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)

    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.mkdtemp(prefix=f"musicrl-bench-{args.preset}-")
        root = tmp
    elif Path(root).exists() and any(Path(root).iterdir()):
        print(f"{root} is not empty: the benchmark times a build from scratch; "
              "give a new folder or leave --root out", file=sys.stderr)
        return 2
    cfg = resolve(DataConfig, args.preset, [f"root={root}", *args.overrides])
    cores = os.cpu_count()
    print(f"building preset {args.preset!r} into {root} on {cores} cores "
          f"({cfg.workers or cores} worker processes)\n")
    t0 = time.perf_counter()
    report = build_corpus(cfg, progress=True)
    wall = time.perf_counter() - t0
    clips = load_clips(root)
    styles = Counter(c.labels["style"] for c in clips)
    audio_s = sum(c.duration for c in clips)
    drums = sum(bool(c.labels.get("drums")) for c in clips) / max(len(clips), 1)
    instruments = {i for c in clips for i in c.labels.get("instruments", [])}

    print("\ncorpus build")
    rows = [
        ("wall time", f"{wall:.1f} s ({wall / 60:.1f} min)", "target ≤ 15 min for small"),
        ("clips", f"{len(clips)}", "target ≥ 2,000"),
        ("audio", f"{audio_s / 3600:.2f} h", "target ≥ 5.5 h"),
        ("pieces", f"{report.pieces}", "target ≥ 300"),
        ("styles", f"{len(styles)}", "target ≥ 6"),
        ("GM instruments", f"{len(instruments)}", "target ≥ 12"),
        ("clips with drums", f"{drums:.1%}", "target 30–60 %"),
        ("render speed", f"{audio_s / wall:.1f}x real time", ""),
        ("clips/s", f"{len(clips) / wall:.2f}", ""),
        ("skipped pieces", f"{len(report.skipped)}", ""),
    ]
    for name, value, note in rows:
        print(f"  {name:<18}{value:>22}   {note}")

    need = LM_TOKENS_PER_S / TOKENS_PER_CLIP
    print(f"\nsmall LM training consumes ≈ {LM_TOKENS_PER_S:.0f} tokens/s / {TOKENS_PER_CLIP} "
          f"tokens per clip = {need:.1f} clips/s\n")
    bench_loader.main(["--root", root, "--batches", "100",
                       "--consumer-clips-per-s", f"{need:.2f}"])
    if tmp and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
