"""Does stage S read the tempo from its MuLan prefix? A likelihood test on held-out clips.

    python training/recipes/tempo_prefix_nll.py WEIGHTS [WEIGHTS …] [--root data/small]
        [--split valid] [--max-clips 80] [--json out.json]

Each clip *with drums* of the split is rendered a second time at another tempo (its exact
arrangement, at least 10 % away: :mod:`musicrl.data.variants`), so the two renderings
differ in tempo alone. For each rendering r ∈ {a, b} and prefix p ∈ {own, other}, the
stage's per-token NLL of r's semantic tokens given the MuLan tokens of p's caption (the
same phrasing slot) or of p's audio. A stage that reads tempo from its prefix gives its
own prefix the lower NLL: the report is the fraction of (rendering, phrasing) pairs where
it does (0.5 = ignores the tempo) and the mean gap NLL(other) − NLL(own) in nats/token,
over the whole clip and over its first 2 s (where the tempo is chosen). Also printed: how
far apart MuLan puts one clip at two tempi (mean cosine of the two audio embeddings)
against two different clips — how much of the tempo the prefix can carry at all.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def score(model, sem, text_tok, audio_tok, t: int) -> dict:
    """Own-vs-other prefix NLL statistics of one stage-S model (see the module doc)."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from musicrl.lm.stages import teacher_forcing

    mcfg = model.cfg
    early = int(round(2.0 * mcfg.frame_rate))
    layout = teacher_forcing(mcfg, jnp.zeros((1, t, 1), jnp.int32))[2]
    valid = np.asarray(layout.valid)[:, 0]

    @nnx.jit
    def logits_fn(m, prefix, inputs):
        return m(prefix, inputs, layout, None, jnp.zeros((prefix.shape[0],), bool))

    def nll(prefix, codes):
        inputs, targets, _, _ = teacher_forcing(mcfg, jnp.asarray(codes)[..., None])
        logits = logits_fn(model, jnp.asarray(prefix)[:, :mcfg.mulan_levels], inputs)
        ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
            logits, jnp.minimum(targets, mcfg.vocab - 1)))[..., 0][:, valid]   # [b, t]
        return ce.mean(1), ce[:, :early].mean(1)

    out = {}
    for kind in ("text", "audio"):
        own_w, oth_w, own_e, oth_e = [], [], [], []
        for i in range(len(sem)):
            for r in (0, 1):
                if kind == "text":
                    prefix = np.concatenate([text_tok[i, r], text_tok[i, 1 - r]])
                else:
                    prefix = np.stack([audio_tok[i, r], audio_tok[i, 1 - r]])
                w, e = nll(prefix, np.repeat(sem[i][r][None, :t], len(prefix), 0))
                h = len(prefix) // 2
                own_w += list(w[:h])
                oth_w += list(w[h:])
                own_e += list(e[:h])
                oth_e += list(e[h:])
        own_w, oth_w, own_e, oth_e = map(np.asarray, (own_w, oth_w, own_e, oth_e))
        out[kind] = {"own_lower": float(np.mean(own_w < oth_w)),
                     "gap_nats": float(np.mean(oth_w - own_w)),
                     "own_lower_first_2s": float(np.mean(own_e < oth_e)),
                     "gap_nats_first_2s": float(np.mean(oth_e - own_e)),
                     "pairs": int(len(own_w))}
    return out


def main() -> None:
    import jax.numpy as jnp

    from musicrl.data.tokens import load_tokens
    from musicrl.data.variants import held_out_twins
    from musicrl.lm.io import load_stage
    from musicrl.mulan import embed_audio_long, embed_prompts_batched, load_mulan
    from musicrl.semantic import load_semantic

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", help="stage-S weight folders")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--mulan", default="assets/small/mulan")
    ap.add_argument("--semantic", default="assets/small/semantic")
    ap.add_argument("--max-clips", type=int, default=80)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    tokens = load_tokens(f"{args.root}/tokens", split=args.split)
    semantic, _ = load_semantic(args.semantic)
    mulan, _ = load_mulan(args.mulan)
    sem, caps, audio_emb, bpms = [], [], [], []       # per clip: pairs (a, b)
    for tw in held_out_twins(args.root, args.split, max_clips=args.max_clips):
        wav_a, wav_b = tw["wav"]
        sem.append((tokens[tw["id"]][0].astype(np.int32), np.asarray(semantic.tokenize(wav_b))))
        caps.append(tw["captions"])
        audio_emb.append(embed_audio_long(mulan, np.stack([wav_a, wav_b])))
        bpms.append(tw["bpm"])
    n_cap = min(len(a) for a, _ in caps)
    text_tok = np.asarray(mulan.tokens_for_embeddings(jnp.asarray(embed_prompts_batched(
        mulan, [t for a, b in caps for t in (*a[:n_cap], *b[:n_cap])], 64))))
    text_tok = text_tok.reshape(len(caps), 2, n_cap, -1)                   # [clip, r, k, m]
    audio_tok = np.asarray(mulan.tokens_for_embeddings(jnp.asarray(
        np.concatenate(audio_emb)))).reshape(len(caps), 2, -1)             # [clip, r, m]
    t = min(min(len(a), len(b)) for a, b in sem)
    emb = np.stack(audio_emb)                                              # [clip, r, e]
    twin = float(np.mean(np.sum(emb[:, 0] * emb[:, 1], -1)))
    cross = emb[:, 0] @ emb[:, 0].T
    others = float((cross.sum() - np.trace(cross)) / (len(emb) * (len(emb) - 1)))
    print(f"MuLan audio embeddings: cos(one clip at two tempi) {twin:.3f}, "
          f"cos(two different clips) {others:.3f} ({len(emb)} clips)")

    results = {}
    for path in args.weights:
        model, _ = load_stage(path, "semantic")
        out = score(model, sem, text_tok, audio_tok, t)
        results[path] = out
        print(f"\n{path}: {len(sem)} clips with drums × 2 tempi (median ratio "
              f"{np.median([max(a, b) / min(a, b) for a, b in bpms]):.2f})")
        print("| prefix | own prefix lower NLL | gap (nats/token) | first 2 s: own lower | gap |")
        print("|---|---|---|---|---|")
        for kind, o in out.items():
            print(f"| {kind} | {o['own_lower']:.3f} | {o['gap_nats']:+.4f} | "
                  f"{o['own_lower_first_2s']:.3f} | {o['gap_nats_first_2s']:+.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "clips": len(sem), "results": results,
                       "audio_cos_two_tempi": twin, "audio_cos_other_clips": others}, f, indent=1)


if __name__ == "__main__":
    main()
