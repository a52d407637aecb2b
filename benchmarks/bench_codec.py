"""Codec speed on this CPU: encode/decode real-time factor and training throughput,
for the Vocos-style iSTFT decoder and the SoundStream transposed-conv decoder side by side.

A program, not a test: it prints tables and ratios and never asserts a time.

    python benchmarks/bench_codec.py                                # small width, random init
    python benchmarks/bench_codec.py --weights runs/codec-small     # the trained codec

Rows:

* **encode / decode RTF** — seconds of audio per wall-clock second for a batch of
  ``--batch`` clips of ``--seconds`` s (all RVQ levels), jitted (pure functions of
  ``nnx.split`` state), after a warm-up call, median of ``--runs`` calls; the
  target for the ``small`` codec is ≥ 50× real time at batch 8. ``cpu RTF`` divides
  by the process CPU time instead (core-seconds, all threads): less sensitive to
  other jobs on the machine. ``GFLOP/audio-s`` is XLA's cost analysis of the
  compiled function (load-independent).
* **train** — audio seconds per second of the real training step
  (``training.codec.train_step``: forward, mel + MR-STFT + commitment loss,
  backward, AdamW with EMA codebook updates), ``--train-batch`` × ``--train-seconds``,
  median of ``--train-steps`` steps after a compiling one.
* **ratio rows** — iSTFT ÷ transposed for each rate: what the decoder choice costs
  per CPU-second. Quality per CPU-second combines these with the quality of each
  decoder trained under the same budget (``musicrl eval codec`` on both).

Weights change nothing here but are accepted so the numbers are of the real model;
the decoder that the weights do not have is built at random init with the same
config. Numbers in docs/codec.md were measured on the idle 2-core development machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from musicrl.codec import Codec, CodecConfig, count_params, load_codec
from musicrl.config import presets_of


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None,
                   help="codec weights folder or training work dir (default: random init)")
    p.add_argument("--preset", default="small", choices=sorted(presets_of(CodecConfig)),
                   help="model shape when no --weights (default small)")
    p.add_argument("--batch", type=int, default=8, help="clips per encode/decode call")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per clip")
    p.add_argument("--runs", type=int, default=5, help="timed encode/decode calls (median)")
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--train-seconds", type=float, default=2.0)
    p.add_argument("--train-steps", type=int, default=3, help="timed train steps (median); 0 "
                   "skips training")
    p.add_argument("--decoders", default="istft,transposed", help="decoders to compare")
    return p.parse_args(argv)


@dataclasses.dataclass
class Timing:
    wall: float   # median wall seconds per call
    cpu: float    # median process CPU seconds per call (all threads)


def _time(fn, runs: int) -> Timing:
    jax.block_until_ready(fn())  # compile + warm
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return Timing(statistics.median(walls), statistics.median(cpus))


def _gflops(jitted, *args) -> float:
    try:
        cost = jitted.lower(*args).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost.get("flops", float("nan"))) / 1e9
    except Exception:  # cost analysis is best effort: not every backend reports it
        return float("nan")


def _models(args: argparse.Namespace) -> dict[str, tuple[Codec, str]]:
    if args.weights:
        loaded, meta = load_codec(args.weights)
        cfg, src = loaded.cfg, f"{args.weights} (step {meta.get('steps', '?')})"
    else:
        loaded, cfg, src = None, presets_of(CodecConfig)[args.preset], "random init"
    out = {}
    for dec in args.decoders.split(","):
        if loaded is not None and loaded.cfg.decoder == dec:
            out[dec] = (loaded, src)
        else:
            out[dec] = (Codec(dataclasses.replace(cfg, decoder=dec), rngs=nnx.Rngs(0, vq=1)),
                        "random init")
    return out


def _codec_speed(model: Codec, wav: jax.Array, runs: int) -> dict[str, float]:
    graphdef, state = nnx.split(model)

    @jax.jit
    def encode(state, wav):
        return nnx.merge(graphdef, state).encode(wav)

    @jax.jit
    def decode(state, codes):
        return nnx.merge(graphdef, state).decode(codes)

    codes = encode(state, wav)
    audio = wav.size / model.sample_rate
    enc = _time(lambda: encode(state, wav), runs)
    dec = _time(lambda: decode(state, codes), runs)
    return {"enc_rtf": audio / enc.wall, "enc_cpu_rtf": audio / enc.cpu,
            "dec_rtf": audio / dec.wall, "dec_cpu_rtf": audio / dec.cpu,
            "enc_gflop": _gflops(encode, state, wav) / audio,
            "dec_gflop": _gflops(decode, state, codes) / audio}


def _train_speed(model_cfg: CodecConfig, batch: int, seconds: float, steps: int
                 ) -> dict[str, float]:
    from training.codec import CodecTrainConfig, make_optimizer, sample_levels, train_step

    cfg = CodecTrainConfig(model=model_cfg, batch_size=batch, crop_seconds=seconds)
    model = Codec(model_cfg, rngs=nnx.Rngs(0, vq=1))
    opt = make_optimizer(model, cfg)
    n = round(seconds * model_cfg.sample_rate / model_cfg.hop) * model_cfg.hop
    wav = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (batch, n)), jnp.float32)
    weights = (cfg.mel_weight, cfg.stft_weight, cfg.commit_weight)
    step = iter(range(10**9))

    def one():
        n_q = jnp.asarray(sample_levels(cfg, next(step), batch))
        return train_step(model, opt, wav, n_q, weights)

    t = _time(one, steps)
    audio = batch * n / model_cfg.sample_rate
    return {"train_aps": audio / t.wall, "train_cpu_aps": audio / t.cpu, "step_s": t.wall}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    models = _models(args)
    first = next(iter(models.values()))[0]
    n = int(args.seconds * first.sample_rate) // first.hop * first.hop
    wav = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (args.batch, n)), jnp.float32)
    print(f"codec speed on {jax.devices()[0].platform.upper()} ({jax.device_count()} device, "
          f"{_cores()} cores): batch {args.batch} × {n / first.sample_rate:g} s, "
          f"{first.num_levels} levels, median of {args.runs}\n", flush=True)

    rows = {}
    for dec, (model, src) in models.items():
        t0 = time.perf_counter()
        r = {"params_m": count_params(model) / 1e6, "src": src,
             **_codec_speed(model, wav, args.runs)}
        if args.train_steps > 0:
            r.update(_train_speed(model.cfg, args.train_batch, args.train_seconds,
                                  args.train_steps))
        rows[dec] = r
        print(f"  [{dec}: measured in {time.perf_counter() - t0:.0f} s]", file=sys.stderr,
              flush=True)

    cols = [("params (M)", "params_m", ".2f"), ("encode RTF", "enc_rtf", ".1f"),
            ("encode cpu RTF", "enc_cpu_rtf", ".1f"), ("decode RTF", "dec_rtf", ".1f"),
            ("decode cpu RTF", "dec_cpu_rtf", ".1f"), ("enc GFLOP/audio-s", "enc_gflop", ".2f"),
            ("dec GFLOP/audio-s", "dec_gflop", ".2f")]
    if args.train_steps > 0:
        cols += [("train audio-s/s", "train_aps", ".2f"),
                 ("train audio-s/cpu-s", "train_cpu_aps", ".2f"), ("train step s", "step_s", ".2f")]
    names = list(rows)
    print("| metric | " + " | ".join(f"{d} ({rows[d]['src']})" for d in names)
          + (" | ratio " + " ÷ ".join(names[:2]) + " |" if len(names) >= 2 else " |"))
    print("|---|" + "---:|" * (len(names) + (1 if len(names) >= 2 else 0)))
    for label, key, fmt in cols:
        vals = [rows[d][key] for d in names]
        cells = [format(v, fmt) for v in vals]
        if len(names) >= 2:
            cells.append(f"{vals[0] / vals[1]:.2f}×" if vals[1] else "n/a")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    for d in names:
        ok = rows[d]["enc_rtf"] >= 50 and rows[d]["dec_rtf"] >= 50
        print(f"{d}: encode {rows[d]['enc_rtf']:.0f}×, decode {rows[d]['dec_rtf']:.0f}× real "
              f"time at batch {args.batch} -> target ≥ 50× {'met' if ok else 'NOT met'}")
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
