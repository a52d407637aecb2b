"""Does stage S follow the prompt's tempo? Stage-S weights side by side, read by the tempo model.

    python training/recipes/tempo_rl_compare.py STAGE_S [STAGE_S ...] [--bundle assets/small]
        [--root data/small] [--clips 110] [--samples 4] [--seconds 4] [--guidance 1,3]
        [--tempo assets/small/tempo] [--json out.json]

For every valid clip with drums (its caption phrasings rotating over ``--samples`` rows),
stage S samples ``--seconds`` of semantic tokens from the caption's MuLan text tokens (the
bundle's MuLan), and the tempo model (rewards/tempo.py) reads their BPM. Printed per
weights and CFG γ: within 8 % of the caption's BPM, permutation chance, the Spearman
correlation of sampled vs prompted BPM (0 = the prompt's tempo is ignored) and the spread
of the sampled log BPM. The same rows and seeds for every weights folder. This is the
RL run's own reward model, so it says what RL optimized; the independent check is the beat
tracker on decoded audio (`training/recipes/tempo_chain.py`, `musicrl eval generate`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from musicrl.lm.io import load_stage
    from rewards.tempo import TempoReward
    from training.reinforce import sampled_tempo_metrics, valid_prompts

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stages", nargs="+", help="stage-S weights folders")
    ap.add_argument("--bundle", default="assets/small", help="its mulan/ makes the prompts")
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--clips", type=int, default=110)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--guidance", default="1,3")
    ap.add_argument("--tempo", default="assets/small/tempo")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    reward = TempoReward(args.tempo)
    out = {}
    print("| stage S | γ | within 8 % | chance | ratio | Spearman | log-BPM spread |")
    print("|---|---|---|---|---|---|---|")
    for path in args.stages:
        model, _ = load_stage(path, "semantic")
        tok, bpm, clip = valid_prompts(args.root, str(Path(args.bundle) / "mulan"), args.clips,
                                       args.samples, model.cfg.mulan_levels, progress=False)
        frames = int(round(args.seconds * model.cfg.frame_rate))
        for g in (float(x) for x in args.guidance.split(",")):
            m = sampled_tempo_metrics(model, reward, tok, bpm, clip, frames, guidance=g)
            out[f"{path}|{g:g}"] = m
            print(f"| {path} | {g:g} | {m['valid/hit']:.3f} | {m['valid/chance']:.3f} | "
                  f"{m['valid/hit'] / max(m['valid/chance'], 1e-9):.2f}× | "
                  f"{m['valid/spearman']:.3f} | {m['valid/bpm_spread']:.3f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
