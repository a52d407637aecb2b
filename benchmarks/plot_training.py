"""Plots training curves from ``metrics.jsonl`` files (train loss and the valid losses).

    python benchmarks/plot_training.py RUN.jsonl [RUN.jsonl ...] -o curves.png

Each file is one run (a work dir's ``metrics.jsonl``, or a copy of it); its name labels
the curves. Valid curves are drawn for every ``valid/loss_*`` key the run logged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.runs), figsize=(4.5 * len(args.runs), 3.6),
                             squeeze=False)
    for ax, path in zip(axes[0], args.runs, strict=True):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        tr = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        ax.plot(*zip(*tr, strict=True), label="train", color="0.6")
        for key in sorted({k for r in rows for k in r if k.startswith("valid/loss_")}):
            pts = [(r["step"], r[key]) for r in rows if key in r]
            ax.plot(*zip(*pts, strict=True), label=key.removeprefix("valid/"), marker=".")
        best = [(r["step"], r["valid/loss_cond"]) for r in rows if "valid/loss_cond" in r]
        if best:
            s, v = min(best, key=lambda x: x[1])
            ax.axvline(s, color="k", lw=0.6, ls=":")
            ax.set_title(f"{path.stem}\nbest valid {v:.3f} at step {s}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("nats / token")
        ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
