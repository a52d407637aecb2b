"""What "k × chance" adherence can be at most, beside what a report measured.

    python training/recipes/adherence_ceiling.py [--root data/small] [--split test]
        [--report docs/generator/report.json] [--json OUT]

``musicrl eval generate`` scores each attribute as accuracy / chance, chance = the same
predictions against permuted labels. A perfect system (estimates = labels) reaches
1 / Σ_c p_c² — about 2× for a yes/no attribute — so a 2× target is out of reach for mode and
drums whatever the generator does. This prints that ceiling for the split's captioned clips
(the clips and prompts ``musicrl eval generate`` uses; labels only, no model, seconds) next to
the real clips' and each system's ratio from a report. Reports written since this recipe
carry ``perfect_ratio`` themselves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="data/small")
    ap.add_argument("--split", default="test")
    ap.add_argument("--report", default=None, help="a musicrl eval generate report.json")
    ap.add_argument("--json", default=None, help="write the table here")
    args = ap.parse_args(argv)

    from musicrl.evaluation.generation import eval_prompts, perfect_adherence

    if not Path(args.root).is_dir():
        raise SystemExit(f"no corpus at {args.root}: build it with "
                         "`musicrl data build --preset small` or pass --root")
    clips, prompts = eval_prompts(args.root, args.split)
    if not clips:
        raise SystemExit(f"no captioned {args.split} clips under {args.root}")
    perfect = perfect_adherence(clips, prompts)
    rep = None
    if args.report:
        rep = json.loads(Path(args.report).read_text())
        if rep.get("prompts") != len(clips) or rep.get("split") != args.split:
            raise SystemExit(f"{args.report} scored {rep.get('prompts')} {rep.get('split')} "
                             f"prompts; {args.root} has {len(clips)} captioned {args.split} "
                             "clips — pass the report of the whole split (no --max-prompts)")
    systems = list(rep["systems"]) if rep else []
    head = ["attribute", "n", "chance of a perfect system", "perfect ratio"]
    if rep:
        head += ["real clips ratio", *[f"{s} ratio" for s in systems]]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    table = {}
    for a, v in perfect.items():
        row = {"n": v["n"], "perfect_chance": v["chance"], "perfect_ratio": v["perfect_ratio"]}
        cells = [a, str(v["n"]), f"{v['chance']:.3f}", f"{v['perfect_ratio']:.2f}×"]
        if rep:
            real = rep["real"]["adherence"].get(a)
            row["real_ratio"] = real and real["ratio"]
            cells.append(f"{real['ratio']:.2f}×" if real else "—")
            for s in systems:
                sv = rep["systems"][s]["adherence"].get(a)
                row[f"{s}_ratio"] = sv and sv["ratio"]
                cells.append(f"{sv['ratio']:.2f}×" if sv else "—")
        table[a] = row
        print("| " + " | ".join(cells) + " |")
    if args.json:
        from musicrl.atomic import write_text_atomic

        write_text_atomic(Path(args.json), json.dumps(
            {"root": args.root, "split": args.split, "report": args.report,
             "attributes": table}, indent=2) + "\n")
    return table


if __name__ == "__main__":
    main()
