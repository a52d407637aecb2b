"""A trained MuLan → the committed inference folder: bf16, no RVQ training statistics.

    python training/recipes/export_mulan.py SRC DST [--keep-text-of OLD | --keep-audio-of OLD]
        [--command "..."]

With ``--keep-text-of OLD`` (a locked-text finetune, ``freeze_text=true``) it first checks
that the text side is unchanged: for the first caption of every clip in data/small, the
new folder's text embeddings and 12 conditioning tokens must equal OLD's bit for bit, so
generators trained on OLD's text tokens stay valid. ``--keep-audio-of OLD`` (a locked-audio
finetune, ``freeze_audio=true``) checks that the RVQ codebooks are OLD's and that the audio
conditioning tokens of the first 10 s of the first ``--audio-clips`` clips equal OLD's. Prints what it checked.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from musicrl.mulan import load_mulan, save_mulan


def _captions(root: str, limit: int = 2000) -> list[str]:
    from musicrl.data.manifest import load_clips

    return [c.captions[0] for c in load_clips(root) if c.captions][:limit]


def _assert_identical(new, old_dir: str, batches, methods: tuple[str, ...],
                      codebooks: bool = False) -> None:
    """``new``'s outputs of each method on every batch (and its RVQ codebooks) equal, bit for
    bit, those of the MuLan in ``old_dir``."""
    old, _ = load_mulan(old_dir)
    if codebooks:
        np.testing.assert_array_equal(np.asarray(new.rvq.codebook[...]),
                                      np.asarray(old.rvq.codebook[...]))
    for batch in batches:
        for name in methods:
            np.testing.assert_array_equal(np.asarray(getattr(new, name)(batch)),
                                          np.asarray(getattr(old, name)(batch)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--keep-text-of", default=None)
    ap.add_argument("--keep-audio-of", default=None)
    ap.add_argument("--audio-clips", type=int, default=64)
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--command", default=None, help="the training command(s), for the meta")
    args = ap.parse_args()

    model, meta = load_mulan(args.src)
    keep = {k: v for k, v in meta.items() if k not in ("component", "config")}
    if args.command:
        keep["command"] = args.command
    keep["dtype"] = "bfloat16 (exported from float32 weights)"
    keep["training_only_state_left_out"] = ["embed_sum", "cluster_size", "usage"]
    keep["exported"] = time.strftime("%Y-%m-%d")
    with tempfile.TemporaryDirectory() as tmp:
        # Round-trip through bf16 first so the check below sees the committed numbers.
        save_mulan(Path(tmp) / "m", model, keep, dtype=jnp.bfloat16, inference_only=True)
        new, _ = load_mulan(Path(tmp) / "m")
        if args.keep_text_of:
            caps = _captions(args.root)
            _assert_identical(new, args.keep_text_of, [caps[i:i + 256] for i in
                                                       range(0, len(caps), 256)],
                              ("embed_prompts", "tokens_for_text"))
            keep["text_side_identical_to"] = {"folder": args.keep_text_of,
                                              "captions_checked": len(caps)}
            print(f"text embeddings and conditioning tokens of {len(caps)} captions: identical "
                  f"to {args.keep_text_of}")
        if args.keep_audio_of:
            import librosa

            from musicrl.audio import load_audio
            from musicrl.data.manifest import load_clips

            clips = load_clips(args.root)[: args.audio_clips]
            n = 10 * new.cfg.sample_rate
            wavs = [librosa.util.fix_length(load_audio(Path(args.root) / c.path,
                                                       new.cfg.sample_rate), size=n)
                    for c in clips]
            _assert_identical(new, args.keep_audio_of,
                              [np.stack(wavs[i:i + 16]) for i in range(0, len(wavs), 16)],
                              ("tokens_for_audio",), codebooks=True)
            keep["audio_side_identical_to"] = {"folder": args.keep_audio_of,
                                               "clips_checked": len(clips)}
            print(f"RVQ codebooks and the audio conditioning tokens of {len(clips)} clips: "
                  f"identical to {args.keep_audio_of}")
        save_mulan(args.dst, new, keep, dtype=jnp.bfloat16, inference_only=True)
    size = sum(f.stat().st_size for f in Path(args.dst).iterdir()) / 1e6
    print(f"{args.dst}: {size:.1f} MB; meta: {json.dumps({k: keep[k] for k in ('steps',)})}")


if __name__ == "__main__":
    main()
