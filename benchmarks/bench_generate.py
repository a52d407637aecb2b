"""Generation speed: end-to-end real-time factor, per-stage split, CFG cost, and
transformer vs Griffin at growing lengths (time per clip and decode memory).

    python benchmarks/bench_generate.py [--model assets/small] [--repeats 3]
        [--lengths 10,30,60] [--skip-backbones]

Prints tables; asserts nothing. Times are wall seconds after one warm-up call
(compilation excluded), median of ``--repeats``. "Memory" is what XLA
allocates for one whole decode (``memory_analysis`` of the compiled decode:
arguments + outputs + temporaries) and the size of the sampling cache pytree
(KV cache for the transformer; ring buffer + recurrent state for Griffin).
The backbone comparison uses the acoustic stage's architecture with random
weights (speed and memory do not depend on the weights) so both backbones are
measured on equal terms in one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.config import presets_of
from musicrl.lm.stages import StageConfig, StageLM
from musicrl.pipeline import Pipeline
from musicrl.sampling import Sampler, _decode, sample_stage


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: compile
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def end_to_end(pipe: Pipeline, seconds: float, repeats: int) -> list[dict]:
    """Median (and best) stage times per CFG scale; the two scales alternate run by run so
    that drift in the machine's speed affects both alike."""
    keys = ("text", "semantic", "acoustic", "decode", "total")
    runs = {g: {k: [] for k in keys} for g in (1.0, 3.0)}
    for g in runs:
        pipe.generate(["a calm piano piece"], seconds=seconds, guidance=g)  # compile
    for r in range(repeats):
        for g, stages in runs.items():
            pipe.generate(["a calm piano piece"], seconds=seconds, seed=r, guidance=g)
            t = pipe.timing
            for k in keys:
                stages[k].append(getattr(t, k))
    rows = []
    for g, stages in runs.items():
        med = {k: statistics.median(v) for k, v in stages.items()}
        rows.append({"guidance": g, **med, "best": min(stages["total"]),
                     "rtf": seconds / med["total"]})
    return rows


def _bytes(tree) -> int:
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def backbone_rows(lengths: list[float], repeats: int) -> list[dict]:
    base = presets_of(StageConfig)["small-acoustic"]
    rows = []
    for kind in ("transformer", "griffin"):
        cfg = dataclasses.replace(base, backbone=dataclasses.replace(base.backbone, kind=kind))
        model = StageLM(cfg, rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(model)
        for sec in lengths:
            frames = int(sec * cfg.frame_rate)
            mul = jnp.zeros((1, cfg.mulan_levels), jnp.int32)
            cond = jnp.zeros((1, frames // cfg.cond_ratio), jnp.int32)
            key = jax.random.key(0)
            def run(model=model, mul=mul, frames=frames, key=key, cond=cond):
                return jax.block_until_ready(sample_stage(model, mul, frames, key=key,
                                                          cond_bt=cond, guidance=1.0))

            t = _median_time(run, repeats)
            compiled = _decode.lower(graphdef, state, mul, cond, key, jnp.float32(1.0),
                                     frames=frames, sampler=Sampler(), guided=False).compile()
            mem = compiled.memory_analysis()
            total = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                     + mem.temp_size_in_bytes) if mem is not None else float("nan")
            steps = frames + cfg.levels - 1
            cache = model.backbone.init_cache(1, cfg.mulan_levels + steps)
            rows.append({"backbone": kind, "seconds": sec, "steps": steps, "time": t,
                         "ms_per_step": 1e3 * t / steps, "decode_mb": total / 2 ** 20,
                         "temp_mb": (mem.temp_size_in_bytes / 2 ** 20) if mem else float("nan"),
                         "cache_mb": _bytes(cache) / 2 ** 20})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="assets/small")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lengths", default="10,30,60")
    ap.add_argument("--skip-backbones", action="store_true")
    ap.add_argument("--skip-e2e", action="store_true", help="only the backbone comparison")
    args = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"{jax.devices()[0].device_kind}; model {args.model}\n")

    if not args.skip_e2e:
        _e2e(args)
    if not args.skip_backbones:
        _backbones(args)


def _e2e(args) -> None:
    pipe = Pipeline.from_pretrained(args.model)
    rows = end_to_end(pipe, args.seconds, args.repeats)
    print(f"End to end, one {args.seconds:g} s clip, batch 1 (median of {args.repeats}, "
          "γ = 1 and 3 alternating):")
    print("| CFG γ | text s | semantic s | acoustic s | decode s | total s | best total s | "
          "× real time (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['guidance']:g} | {r['text']:.3f} | {r['semantic']:.3f} | "
              f"{r['acoustic']:.3f} | {r['decode']:.3f} | {r['total']:.3f} | {r['best']:.3f} | "
              f"{r['rtf']:.2f}× |")
    print(f"\nCFG cost ratio (γ=3 / γ=1, total time): {rows[1]['total'] / rows[0]['total']:.2f}×"
          f"; LM stages only: {(rows[1]['semantic'] + rows[1]['acoustic']) / (rows[0]['semantic'] + rows[0]['acoustic']):.2f}×")


def _backbones(args) -> None:
    lengths = [float(x) for x in args.lengths.split(",")]
    print("\nTransformer vs Griffin, acoustic stage architecture (random weights), batch 1, "
          "no CFG:")
    print("| backbone | audio s | steps | time s | ms/step | XLA decode MB | temp MB | "
          "cache MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in backbone_rows(lengths, max(1, args.repeats - 1)):
        print(f"| {r['backbone']} | {r['seconds']:g} | {r['steps']} | {r['time']:.2f} | "
              f"{r['ms_per_step']:.2f} | {r['decode_mb']:.1f} | {r['temp_mb']:.1f} | "
              f"{r['cache_mb']:.2f} |")


if __name__ == "__main__":
    main()
