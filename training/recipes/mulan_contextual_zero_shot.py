"""Zero-shot attributes from label words said inside whole descriptions (a negative result).

    python training/recipes/mulan_contextual_zero_shot.py [--weights assets/small/mulan]
        [--root data/small] [--split valid] [--contexts 64,256,1024] [--scales 0,2,5,10,20]

``musicrl eval mulan`` scores a clip's zero-shot mode by bare label prompts ("a piece in a
minor key", …). A bare "minor key" is a phrase MuLan rarely saw alone; inside a caption it
is how the corpus says it (the counterfactual-caption test reads the mode at 0.71 there).
This scores class k by log-mean-exp(s · cos(audio, prompt)) over n train-split captions
with only the attribute set to k (the same labels and random draws for every class, so
the prompts come in matched pairs; s = 0: cosine with their mean embedding) — the class's
marginal under a softmax at scale s, with the rest of the description integrated out.
No test label is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def contextual_prompts(train_clips, attribute: str, n: int = 256, seed: int = 0
                       ) -> dict[object, list[str]]:
    """Class → ``n`` captions of train clips' labels with ``attribute`` set to the class."""
    from musicrl.data.captioning import LABEL_CLASSES, make_captions

    pool = [c.labels for c in train_clips if c.labels.get(attribute) is not None
            and c.labels.get("melody_program") is not None]
    rng = np.random.default_rng(seed)
    picks = [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
    bpm = {b: int(np.median([lb["bpm"] for lb in pool if lb.get("tempo_bucket") == b]))
           for b in LABEL_CLASSES["tempo_bucket"]}
    grooves = [lb["drum_style"] for lb in pool if lb.get("drums") and lb.get("drum_style")]
    out: dict[object, list[str]] = {k: [] for k in LABEL_CLASSES[attribute]}
    for j, lb in enumerate(picks):
        for k in LABEL_CLASSES[attribute]:
            lb2 = {**lb, attribute: k}
            if attribute == "tempo_bucket" and lb.get("tempo_bucket") != k:
                lb2["bpm"] = bpm[k]
            if attribute == "drums" and k and not lb.get("drum_style"):
                lb2["drum_style"] = grooves[j % len(grooves)]
            out[k].append(make_captions(lb2, 1, np.random.default_rng((seed, j)))[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="assets/small/mulan")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--contexts", default="64,256,1024")
    ap.add_argument("--scales", default="0,2,5,10,20")
    args = ap.parse_args()

    from scipy.special import logsumexp

    from musicrl.audio import load_audio
    from musicrl.data.manifest import load_clips
    from musicrl.evaluation.mulan import label_prompts, zero_shot
    from musicrl.mulan import embed_audio_long, embed_prompts_batched, load_mulan

    model = load_mulan(args.weights)[0]
    clips = [c for c in load_clips(args.root, splits=[args.split]) if c.captions]
    train = load_clips(args.root, splits=["train"])
    wavs = [load_audio(Path(args.root) / c.path, model.cfg.sample_rate) for c in clips]
    n = max(len(w) for w in wavs)
    wav = np.stack([np.pad(w, (0, n - len(w))) for w in wavs])
    audio = np.concatenate([embed_audio_long(model, wav[i:i + 32])
                            for i in range(0, len(wav), 32)])

    def embed(ps):
        return embed_prompts_batched(model, list(ps))

    scales = [float(x) for x in args.scales.split(",")]
    print(f"{args.split}, {len(clips)} clips; accuracy by number of contexts × scale s "
          "(s = 0: cosine with the contexts' mean embedding)\n")
    print("| attribute | chance (1/classes) | majority | bare label prompts | contexts | "
          + " | ".join(f"s = {s:g}" for s in scales) + " |\n|---|---|---|---|---|"
          + "---|" * len(scales))
    bare = label_prompts(train)
    for attr in ("mode", "tempo_bucket", "drums"):
        truth = [c.labels.get(attr) for c in clips]
        z = zero_shot(audio, truth, embed, bare[attr])
        b, head = z["accuracy"], f"{z['chance']:.3f} | {z['majority']:.3f}"
        for nctx in (int(x) for x in args.contexts.split(",")):
            ps = contextual_prompts(train, attr, n=nctx)
            labels = list(ps)
            emb = {k: embed(v) for k, v in ps.items()}
            accs = []
            for s in scales:
                if s == 0:
                    sc = np.stack([audio @ (emb[k].mean(0) / np.linalg.norm(emb[k].mean(0)))
                                   for k in labels], 1)
                else:
                    sc = np.stack([logsumexp(s * audio @ emb[k].T, axis=1) for k in labels], 1)
                pred = [labels[j] for j in sc.argmax(1)]
                accs.append(np.mean([pred[i] == truth[i] for i in range(len(truth))
                                     if truth[i] in ps]))   # clips with the label (as bare)
            print(f"| {attr} | {head} | {b:.3f} | {nctx} | " + " | ".join(f"{a:.3f}" for a in accs) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
