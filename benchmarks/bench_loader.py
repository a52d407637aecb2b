"""Throughput of the training loader (clips/s, MB/s) for a few thread/prefetch settings.

A program, not a test: it prints a table and a comparison with the rate a
training consumer needs, and never asserts a time.

    python benchmarks/bench_loader.py --root data/small --batch-size 8 --crop-seconds 4

Each row builds a fresh loader (same seed, so the same files), discards a few
warm-up batches (thread start, first reads), then times ``--batches`` batches.
Rows after the first usually read from the OS page cache; run twice to see
warm numbers for every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from musicrl.data.config import LoaderConfig
from musicrl.data.loader import crop_samples, make_loader
from musicrl.data.manifest import load_clips


def _settings(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        try:
            threads, prefetch = (int(v) for v in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected THREADS:PREFETCH, e.g. 2:4") from None
        out.append((threads, prefetch))
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="data/small", help="data root with manifest.jsonl")
    p.add_argument("--split", default="train", choices=("train", "valid", "test"))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop-seconds", type=float, default=4.0)
    p.add_argument("--batches", type=int, default=200, help="timed batches per row")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches per row")
    p.add_argument("--settings", type=_settings, default=_settings("1:0,1:4,2:4,4:8"),
                   help="THREADS:PREFETCH pairs, comma-separated (prefetch 0 = no background)")
    p.add_argument("--consumer-clips-per-s", type=float, default=50.0,
                   help="clips/s the training step consumes (to compare against)")
    return p.parse_args(argv)


def _measure(cfg: LoaderConfig, clips: list, batches: int, warmup: int) -> tuple[float, float, int]:
    """Returns (seconds to the first batch, seconds for the timed batches, clips timed)."""
    t0 = time.perf_counter()
    with make_loader(cfg, clips) as loader:
        next(loader)
        first = time.perf_counter() - t0
        for _ in range(warmup):
            next(loader)
        n = 0
        t1 = time.perf_counter()
        for _ in range(batches):
            n += len(next(loader)["clip_id"])
        return first, time.perf_counter() - t1, n


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        clips = load_clips(args.root, splits=[args.split])
    except FileNotFoundError:
        print(f"no corpus under {args.root}: build one first with "
              "`musicrl data build --preset small` (or `--preset tiny` and "
              "`--root data/tiny` for a quick look)", file=sys.stderr)
        return 2
    if not clips:
        print(f"split {args.split!r} under {args.root} has no clips; "
              "rebuild with `musicrl data build` or pick another --split", file=sys.stderr)
        return 2
    base = LoaderConfig(root=args.root, split=args.split, batch_size=args.batch_size,
                        crop_seconds=args.crop_seconds, num_epochs=0,
                        drop_remainder=len(clips) >= args.batch_size)
    mb_per_clip = crop_samples(base) * 4 / 1e6  # float32 audio handed to training
    print(f"loader throughput: {args.root} [{args.split}] {len(clips)} clips, "
          f"batch {args.batch_size}, crop {args.crop_seconds:g} s, "
          f"{args.batches} timed batches per row\n")
    print(f"{'threads':>7} {'prefetch':>8} {'first batch s':>13} {'clips/s':>9} {'MB/s':>8}")
    best = 0.0
    for threads, prefetch in args.settings:
        cfg = dataclasses.replace(base, num_threads=max(threads, 1), prefetch=prefetch)
        first, seconds, n = _measure(cfg, clips, args.batches, args.warmup)
        rate = n / seconds if seconds > 0 else float("inf")
        best = max(best, rate)
        print(f"{threads:>7} {prefetch:>8} {first:>13.3f} {rate:>9.1f} {rate * mb_per_clip:>8.2f}")
    need = args.consumer_clips_per_s
    print(f"\nconsumer needs {need:g} clips/s (--consumer-clips-per-s); "
          f"best measured {best:.1f} clips/s = {best / need:.1f}x that rate"
          + ("" if best >= need else " -> the loader would be the bottleneck"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
