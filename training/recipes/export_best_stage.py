"""Per stage, the run (work dirs ``lm-<stage>-*``) with the lowest valid loss → bf16 folder.

    python training/recipes/export_best_stage.py WORK_DIR EXPORT_DIR
"""

import json
import shutil
import sys
from pathlib import Path

import jax.numpy as jnp

from musicrl.lm.io import load_stage, save_stage


def main(work: Path, exp: Path) -> None:
    for stage in ("semantic", "acoustic"):
        cands = []
        for wd in sorted(work.glob(f"lm-{stage}-*")):
            src = wd / "weights" if (wd / "weights" / "meta.json").exists() else wd / "best"
            if (src / "meta.json").exists():
                m = json.loads((src / "meta.json").read_text())
                cands.append((m.get("valid_loss_cond", float("inf")), wd.name, src))
                print(stage, wd.name, "best valid", m.get("valid_loss_cond"), "at", m.get("steps"))
        if not cands:
            print(f"{stage}: nothing to export")
            continue
        _, name, src = min(cands)
        model, meta = load_stage(src, stage)
        keep = {k: v for k, v in meta.items() if k not in ("component", "config")}
        keep["selected_from"] = {n: v for v, n, _ in cands}
        save_stage(exp / f"lm-{stage}", model, meta=keep, dtype=jnp.bfloat16)
        for _, n, _ in cands:
            if (work / n / "metrics.jsonl").exists():
                shutil.copy(work / n / "metrics.jsonl", exp / f"lm-{stage}" / f"train-{n}.jsonl")
        print(stage, "exported", name, json.dumps(
            {k: keep.get(k) for k in ("steps", "steps_run", "valid_loss_cond",
                                      "valid_loss_uncond")}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
