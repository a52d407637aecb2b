"""Transformer vs Griffin decoding on this CPU: time per generated step and memory, at
growing lengths, side by side (DESIGN §13).

A program, not a test: it prints a table and never asserts a time.

    python benchmarks/bench_backbones.py                         # small preset, 500/1500/3000
    python benchmarks/bench_backbones.py --preset tiny --steps 100 300

For each backbone and length N, one jitted ``lax.fori_loop`` decodes N steps from an
empty cache (batch ``--batch``), feeding each output back as the next input (the
stage models' embeddings and heads are left out: this measures the backbone).

Columns:

* ``ms/step`` — wall-clock time of the whole decode ÷ N, median of ``--runs`` after a
  compiling call; ``cpu ms/step`` divides the process CPU time instead (less
  sensitive to other jobs on the machine).
* ``cache MiB`` — bytes of the sampling state: the transformer's KV cache grows
  with N, Griffin's (ring buffer + conv + LRU state) does not.
* ``peak MiB`` — XLA's memory analysis of the compiled decode (arguments + outputs
  + temporaries, aliasing excluded): load-independent.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from musicrl.config import resolve
from musicrl.lm import BackboneConfig, make_backbone


def _mib(n: float) -> float:
    return n / 2 ** 20


def measure(kind: str, preset: str, steps: int, batch: int, runs: int) -> dict[str, float]:
    cfg = resolve(BackboneConfig, preset, [f"kind={kind}"])
    model = make_backbone(cfg, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
    graphdef, state = nnx.split(model)

    def decode(state, x0):
        m = nnx.merge(graphdef, state)
        cache = m.init_cache(batch, steps)

        def body(_, carry):
            x, cache = carry
            y, cache = m(x, cache=cache)
            return y, cache

        return jax.lax.fori_loop(0, steps, body, (x0, cache))

    x0 = jax.random.normal(jax.random.key(1), (batch, 1, cfg.width), jnp.float32)
    compiled = jax.jit(decode).lower(state, x0).compile()
    mem = compiled.memory_analysis()
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes) if mem is not None else float("nan")
    out = compiled(state, x0)
    jax.block_until_ready(out)
    cache_bytes = sum(a.nbytes for a in jax.tree.leaves(out[1]))
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(state, x0))
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    return {"params": params, "ms": 1e3 * statistics.median(walls) / steps,
            "cpu_ms": 1e3 * statistics.median(cpus) / steps, "cache": _mib(cache_bytes),
            "peak": _mib(peak)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small", choices=("tiny", "small", "base"))
    ap.add_argument("--steps", type=int, nargs="+", default=[500, 1500, 3000])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    print(f"preset={args.preset} batch={args.batch} device={jax.devices()[0].device_kind}")
    header = (f"{'steps':>6} {'backbone':>12} {'params M':>9} {'ms/step':>8} {'cpu ms/step':>11} "
              f"{'cache MiB':>10} {'peak MiB':>9}")
    print(header)
    print("-" * len(header))
    for n in args.steps:
        rows = {k: measure(k, args.preset, n, args.batch, args.runs)
                for k in ("transformer", "griffin")}
        for kind, r in rows.items():
            print(f"{n:>6} {kind:>12} {r['params'] / 1e6:>9.2f} {r['ms']:>8.2f} "
                  f"{r['cpu_ms']:>11.2f} {r['cache']:>10.2f} {r['peak']:>9.2f}")
        t, g = rows["transformer"], rows["griffin"]
        print(f"{n:>6} {'T / G':>12} {'':>9} {t['ms'] / g['ms']:>8.2f} "
              f"{t['cpu_ms'] / g['cpu_ms']:>11.2f} {t['cache'] / g['cache']:>10.2f} "
              f"{t['peak'] / g['peak']:>9.2f}")


if __name__ == "__main__":
    main()
