"""Where the generator loses the mode: each link of the chain, read by the same estimator.

    python training/recipes/mode_chain.py BUNDLE [--root data/small] [--split valid]
        [--mode assets/small/mode] [--json out.json]

For every clip of the split with a mode label, the evaluation's chroma-template key
estimator (:mod:`musicrl.evaluation.estimators`) reads the mode of

1. the real audio;
2. the codec's resynthesis from the first K levels of the clip's real codec tokens (K =
   the levels stage A writes);
3. stage A's rendering of the clip's *real* semantic tokens (prompted with its caption,
   γ = 3): what stage A keeps of the mode its semantic input carries;
4. a generated clip (stage S's first sample for the caption, then stage A, γ = 3);

beside the label. With ``--mode``: the mode reward model on the real semantic tokens (its
own accuracy) and on the generated ones (its agreement with the estimator on the decoded
audio). Selection on stage S can at best move link 4 to link 3.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--mode", default="", help="a mode reward model folder (optional)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from musicrl.audio import load_audio
    from musicrl.data.manifest import load_clips
    from musicrl.data.tokens import load_tokens
    from musicrl.evaluation.estimators import key_from_chroma, mean_chroma
    from musicrl.pipeline import Pipeline, _decode_codes
    from musicrl.sampling import sample_stage

    t0 = time.time()
    pipe = Pipeline.from_pretrained(args.bundle)
    toks = load_tokens(Path(args.root) / "tokens", split=args.split)
    clips = [c for c in load_clips(args.root, splits=[args.split])
             if c.id in toks and c.labels and c.labels.get("mode")]
    if not clips:
        raise SystemExit(f"no {args.split} clip of {args.root} has tokens and a mode label")
    s_frames = int(round(10.0 * pipe.semantic.cfg.frame_rate))
    a_cfg = pipe.acoustic.cfg
    a_frames = s_frames * a_cfg.cond_ratio
    label = np.array([c.labels["mode"] for c in clips])
    prompts = [c.captions[i % len(c.captions)] for i, c in enumerate(clips)]
    sem_real = np.stack([toks[c.id][0][:s_frames] for c in clips]).astype(np.int32)

    def mode_of(wavs) -> list[str]:
        return [key_from_chroma(mean_chroma(np.asarray(w)))[1] for w in wavs]

    links: dict[str, list[str]] = {"real audio": [], "codec resynthesis": [],
                                   "stage A from real semantic tokens": [], "generated": []}
    sem_gen = []
    for i in tqdm(range(0, len(clips), args.batch), desc="mode chain"):
        sl = slice(i, i + args.batch)
        links["real audio"] += mode_of([load_audio(Path(args.root) / c.path)
                                        for c in clips[sl]])
        codes = np.stack([toks[c.id][1][:a_frames, :a_cfg.levels] for c in clips[sl]])
        links["codec resynthesis"] += mode_of(_decode_codes(pipe.codec, jnp.asarray(
            codes.astype(np.int32))))
        mul = pipe.text_tokens(prompts[sl])
        key_a = jax.random.fold_in(jax.random.key(1), i)
        aco = sample_stage(pipe.acoustic, mul[:, :a_cfg.mulan_levels], a_frames, key=key_a,
                           cond_bt=jnp.asarray(sem_real[sl]), guidance=3.0)
        links["stage A from real semantic tokens"] += mode_of(_decode_codes(pipe.codec, aco))
        gen = np.asarray(sample_stage(pipe.semantic, mul, s_frames, guidance=3.0,
                                      key=jax.random.fold_in(jax.random.key(0), i)))[..., 0]
        sem_gen.append(gen)
        aco = sample_stage(pipe.acoustic, mul[:, :a_cfg.mulan_levels], a_frames, key=key_a,
                           cond_bt=jnp.asarray(gen), guidance=3.0)
        links["generated"] += mode_of(_decode_codes(pipe.codec, aco))
    other = ~np.eye(len(clips), dtype=bool)
    res: dict[str, dict[str, float]] = {}
    print(f"\n{len(clips)} {args.split} clips with a mode label ({time.time() - t0:.0f} s)\n")
    print("| link | mode vs label | chance | ratio | estimated minor |\n|---|---|---|---|---|")
    for name, est in links.items():
        est = np.array(est)
        acc = float(np.mean(est == label))
        chance = float(np.mean((est[:, None] == label[None, :])[other]))
        res[name] = {"accuracy": acc, "chance": chance, "ratio": acc / chance,
                     "estimated_minor": float(np.mean(est == "minor"))}
        print(f"| {name} | {acc:.3f} | {chance:.3f} | {acc / chance:.2f}× | "
              f"{res[name]['estimated_minor']:.2f} |")
    if args.mode:
        from rewards.mode import ModeReward

        reward = ModeReward(args.mode)
        real_minor = reward.minor(sem_real) > 0.5
        gen_minor = reward.minor(np.concatenate(sem_gen)) > 0.5
        res["mode model"] = {
            "real_tokens_vs_label": float(np.mean(real_minor == (label == "minor"))),
            "generated_tokens_vs_estimator": float(np.mean(
                gen_minor == (np.array(links["generated"]) == "minor"))),
            "generated_minor_share": float(np.mean(gen_minor))}
        print(f"\nmode model ({args.mode}): real tokens vs label "
              f"{res['mode model']['real_tokens_vs_label']:.3f}; generated tokens vs the "
              f"estimator on their audio {res['mode model']['generated_tokens_vs_estimator']:.3f}"
              f" (minor share {res['mode model']['generated_minor_share']:.2f})")
    if args.json:
        from musicrl.atomic import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(
            {"bundle": args.bundle, "split": args.split, "clips": len(clips),
             "mode": args.mode, "links": res}, indent=2))


if __name__ == "__main__":
    main()
