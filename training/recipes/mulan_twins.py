"""Does MuLan hear tempo (or mode)? One passage at two tempi (in two modes), on held-out clips.

    python training/recipes/mulan_twins.py MULAN [MULAN …] [--root data/small]
        [--kind tempo|mode] [--split valid] [--max-clips 80] [--json out.json]

Each clip *with drums* of the split (for ``--kind mode``: each clip) is rendered a second
time at another tempo (its exact arrangement, ≥ 10 % away), or in the parallel mode
(:func:`musicrl.data.variants.held_out_twins`), so the two renderings differ in that alone,
and each gets captions written from its own labels. Per MuLan:

* audio cosine of the two renderings (whole-clip embeddings), against two different clips,
  and the same after the conditioning RVQ (the prefix a generator stage sees);
* audio → text: for each rendering and phrasing slot, does its own caption score higher than
  the twin's caption in that slot? (0.5 = deaf to the attribute);
* text → audio: does a caption pick its own rendering over the twin?
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def twin_scores(mulan, twins) -> dict:
    import jax.numpy as jnp

    from musicrl.mulan import embed_audio_long, embed_prompts_batched

    emb = np.stack([embed_audio_long(mulan, np.stack(t["wav"])) for t in twins])   # [c, 2, e]
    k = min(len(c) for t in twins for c in t["captions"])
    texts = [cap for t in twins for caps in t["captions"] for cap in caps[:k]]
    txt = embed_prompts_batched(mulan, texts, 64).reshape(len(twins), 2, k, -1)   # [c, 2, k, e]
    rec = np.asarray(mulan.embeddings_for_tokens(mulan.tokens_for_embeddings(
        jnp.asarray(emb.reshape(-1, emb.shape[-1]))))).reshape(emb.shape)
    rec = rec / np.linalg.norm(rec, axis=-1, keepdims=True)
    sims = np.einsum("cre,cske->crsk", emb, txt)                  # [clip, audio r, text s, k]
    a2t = np.mean(sims[:, [0, 1], [0, 1]] > sims[:, [0, 1], [1, 0]])
    t2a = np.mean(sims[:, [0, 1], [0, 1]] > sims[:, [1, 0], [0, 1]])
    cross = emb[:, 0] @ emb[:, 0].T
    n = len(emb)
    return {"clips": n, "phrasings": k,
            "audio_cos_twins": float(np.mean(np.sum(emb[:, 0] * emb[:, 1], -1))),
            "audio_cos_other_clips": float((cross.sum() - np.trace(cross)) / (n * (n - 1))),
            "prefix_cos_twins": float(np.mean(np.sum(rec[:, 0] * rec[:, 1], -1))),
            "audio_to_text_own_wins": float(a2t), "text_to_audio_own_wins": float(t2a),
            "median_tempo_ratio": float(np.median([max(t["bpm"]) / min(t["bpm"])
                                                   for t in twins]))}


def main() -> None:
    from musicrl.data.variants import held_out_twins
    from musicrl.mulan import load_mulan

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mulan", nargs="+", help="MuLan weight folders")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--kind", default="tempo", choices=("tempo", "mode"))
    ap.add_argument("--max-clips", type=int, default=80)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    twins = held_out_twins(args.root, args.split, max_clips=args.max_clips, kind=args.kind)
    results = {p: twin_scores(load_mulan(p)[0], twins) for p in args.mulan}
    if args.kind == "tempo":
        print(f"\n{args.split} clips with drums, each at two tempi ({len(twins)} clips, median "
              f"ratio {next(iter(results.values()))['median_tempo_ratio']:.2f})\n")
    else:
        print(f"\n{args.split} clips, each in two modes ({len(twins)} clips)\n")
    print(f"| MuLan | audio cos, two {args.kind}s | other clips | prefix cos, twins "
          "| audio→text own wins | text→audio own wins |")
    print("|---|---|---|---|---|---|")
    for p, r in results.items():
        print(f"| {p} | {r['audio_cos_twins']:.3f} | {r['audio_cos_other_clips']:.3f} | "
              f"{r['prefix_cos_twins']:.3f} | {r['audio_to_text_own_wins']:.3f} | "
              f"{r['text_to_audio_own_wins']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "kind": args.kind, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
