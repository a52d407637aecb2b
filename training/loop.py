"""The shared training loop: resume, step, log, checkpoint, hooks.

Every trainer (codec, MuLan, LM stages, post-training objectives) owns a model,
an optimizer, a batch source with a saveable position, and one jitted step
function; this loop owns everything else:

* **resume** — if the work dir holds a checkpoint, model, optimizer, step and
  the loader position are restored, and the run continues exactly where it
  stopped (the metrics log is cut back to the restored step);
* **logging** — ``metrics.jsonl`` (one JSON object per logged step: means over
  the window, throughput) and a tqdm progress bar;
* **checkpoints** — every ``ckpt_every`` steps, at the end, and on Ctrl-C or
  SIGTERM, through :mod:`musicrl.checkpoint` (atomic);
* **hooks** — ``(every, fn(step, model))`` callbacks for examples and evals.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from musicrl.atomic import write_text_atomic
from musicrl.checkpoint import Checkpointer
from musicrl.config import opt
from musicrl.errors import MusicrlError

__all__ = ["LoopConfig", "BatchSource", "Hook", "run_loop", "read_metrics", "adamw_cosine",
           "ResumeError", "config_changes", "SeededBatches", "LastEval"]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    workdir: str = opt("runs/run", "work dir: checkpoints, metrics.jsonl, examples")
    steps: int = opt(10_000, "total optimizer steps", min=1)
    log_every: int = opt(50, "steps between metric log lines", min=1)
    ckpt_every: int = opt(500, "steps between checkpoints", min=1)
    keep_checkpoints: int = opt(3, "checkpoints kept on disk", min=1)
    seed: int = opt(0, "seed of the run (init, data order, dropout)", min=0)


class BatchSource(Protocol):
    def __next__(self) -> dict[str, Any]: ...
    def get_state(self) -> dict[str, Any]: ...
    def set_state(self, state: dict[str, Any]) -> None: ...


class SeededBatches:
    """A batch source whose batch i is a pure function of (seed, i), so its position is the
    step alone and a resumed run sees exactly the batches an uninterrupted one would.
    Subclasses set ``self.seed`` and implement :meth:`make`."""

    seed: int = 0
    step: int = 0

    def make(self, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def get_state(self) -> dict[str, Any]:
        return {"step": self.step}

    def set_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])

    def __next__(self) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        return self.make(rng)


class LastEval:
    """An evaluation ``fn(step, model) -> metrics`` as a hook function that remembers its
    latest result, so a trainer can export the final metrics with its weights
    (:meth:`at` evaluates once more only if the last evaluation was at another step)."""

    def __init__(self, fn: Callable[[int, Any], dict[str, float]]):
        self.fn, self.step, self.metrics = fn, None, {}

    def __call__(self, step: int, model: Any) -> dict[str, float]:
        self.metrics, self.step = dict(self.fn(step, model)), step
        return self.metrics

    def at(self, step: int, model: Any) -> dict[str, float]:
        if self.step != step:
            self(step, model)
        return self.metrics

    def summary(self) -> str:
        return ", ".join(f"{k}={v:.3f}" for k, v in self.metrics.items())


@dataclasses.dataclass(frozen=True)
class Hook:
    every: int
    fn: Callable[[int, Any], dict[str, float] | None]
    at_end: bool = True


StepFn = Callable[[Any, Any, dict[str, Any], int], dict[str, Any]]


def adamw_cosine(model: Any, *, lr: float, warmup_steps: int, total_steps: int,
                 weight_decay: float, grad_clip: float, b1: float = 0.9, b2: float = 0.999,
                 wrt: Any = None, lr_mult: tuple[str, float] | None = None) -> Any:
    """The trainers' optimizer: global-norm clip, AdamW, linear warmup + cosine decay to 5 %,
    over the parameters ``wrt`` selects (an nnx filter; default all ``nnx.Param``).

    ``lr_mult=(name, k)``: parameters whose path contains ``name`` learn at k × the rate
    (AdamW's step scaled after the fact: one optimizer state, no masked leaves, so
    checkpoints stay plain arrays), e.g. a small branch whose output the rest drowns."""
    import optax
    from flax import nnx

    sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup_steps, 1),
                                               max(total_steps, warmup_steps + 1),
                                               end_value=lr * 0.05)
    parts = [optax.clip_by_global_norm(grad_clip),
             optax.adamw(sched, b1=b1, b2=b2, weight_decay=weight_decay)]
    if lr_mult is not None and lr_mult[1] != 1.0:
        parts.append(_scale_paths(*lr_mult))
    tx = optax.chain(*parts)
    return nnx.Optimizer(model, tx, wrt=nnx.Param if wrt is None else wrt)


def _scale_paths(name: str, k: float) -> Any:
    """A stateless optax transform: updates of parameters whose path has a key ``name``
    are multiplied by ``k``."""
    import jax
    import optax

    def hit(path) -> bool:
        return any(name == getattr(p, "key", getattr(p, "name", None)) for p in path)

    return optax.stateless(lambda updates, params: jax.tree_util.tree_map_with_path(
        lambda path, u: u * k if hit(path) else u, updates))


class ResumeError(MusicrlError, ValueError):
    """A work dir's checkpoint was made with other settings than the run resuming it."""


# Settings that may change when a run is resumed: how long it runs and how often it logs,
# evaluates and checkpoints. Anything else would silently mix two runs.
_RESUMABLE = ("steps", "log_every", "ckpt_every", "keep_checkpoints", "eval_every",
              "eval_batches", "valid_clips", "valid_samples", "workdir")


def config_changes(saved: dict | None, config: dict) -> list[str]:
    """``"key: saved → now"`` for each setting (dotted path) that differs between a
    checkpoint's config and the resuming run's, except :data:`_RESUMABLE` ones. An old
    checkpoint without a config gives no changes."""
    if not isinstance(saved, dict):
        return []

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out

    a = {k.rstrip("."): v for k, v in flat(saved).items()}
    b = {k.rstrip("."): v for k, v in flat(json.loads(json.dumps(config))).items()}  # as saved
    return [f"{k}: {a.get(k, '(unset)')!r} → {b.get(k, '(unset)')!r}"
            for k in sorted(set(a) | set(b))
            if k.rsplit(".", 1)[-1] not in _RESUMABLE and a.get(k) != b.get(k)]


def _cut_log(path: Path, step: int) -> None:
    """Drops log lines past ``step`` (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def read_metrics(workdir: str | Path) -> list[dict[str, Any]]:
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_loop(cfg: LoopConfig, *, model: Any, optimizer: Any, batches: BatchSource,
             step_fn: StepFn, config: dict[str, Any], hooks: Sequence[Hook] = (),
             on_start: Callable[[int], None] | None = None, items_per_step: float = 0.0,
             items_name: str = "items", progress: bool = True, desc: str = "train") -> int:
    """Trains until ``cfg.steps``; returns the final step.

    Args:
      model, optimizer: NNX objects, updated in place by ``step_fn``.
      batches: iterator with ``get_state``/``set_state`` (the data position).
      step_fn: ``(model, optimizer, batch, step) -> metrics`` (jitted inside).
      config: the JSON config of the run, stored in every checkpoint.
      hooks: periodic callbacks; metrics they return are logged.
      on_start: called with the start step after any resume (e.g. codebook init at 0).
      items_per_step: e.g. seconds of audio per step, to log a throughput.
    """
    from tqdm import tqdm

    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "metrics.jsonl"
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=cfg.keep_checkpoints)
    step = 0
    if ckpt.latest_step() is not None:
        extra = ckpt.restore(model=model, optimizer=optimizer)
        changed = config_changes(extra.get("config"), config)
        if changed:
            raise ResumeError(
                f"{workdir} holds a run made with other settings ({'; '.join(changed[:6])}"
                f"{' …' if len(changed) > 6 else ''}); resuming would mix the two. Rerun with "
                "the same settings (only loop.steps and the log/eval/checkpoint cadence may "
                "change on resume), or pass a new loop.workdir")
        step = int(extra["step"])
        if "loader" in extra:
            batches.set_state(extra["loader"])
        _cut_log(log_path, step)
        print(f"resumed from {workdir} at step {step}")
    write_text_atomic(workdir / "config.json", json.dumps(config, indent=2, sort_keys=True))
    if on_start is not None:
        on_start(step)

    stop = {"flag": False}

    def _handler(signum, frame):  # finish the current step, save, exit
        stop["flag"] = True

    old = signal.signal(signal.SIGTERM, _handler)
    window: dict[str, list[float]] = {}
    t_window = time.perf_counter()
    n_window = 0

    def save(s: int) -> None:
        ckpt.save(s, model=model, optimizer=optimizer,
                  extra={"step": s, "loader": batches.get_state(), "config": config})

    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not progress,
               dynamic_ncols=True, unit="step")
    try:
        with log_path.open("a") as log:
            while step < cfg.steps and not stop["flag"]:
                batch = next(batches)
                metrics = step_fn(model, optimizer, batch, step)
                step += 1
                n_window += 1
                for k, v in jax.device_get(metrics).items():
                    arr = np.asarray(v, np.float64)
                    if arr.ndim == 0:
                        window.setdefault(k, []).append(float(arr))
                    else:
                        for i, x in enumerate(arr.reshape(-1)):
                            window.setdefault(f"{k}/{i}", []).append(float(x))
                extra_metrics: dict[str, float] = {}
                for h in hooks:
                    if step % h.every == 0 or (h.at_end and step == cfg.steps):
                        extra_metrics.update(h.fn(step, model) or {})
                if step % cfg.log_every == 0 or step == cfg.steps or extra_metrics:
                    dt = time.perf_counter() - t_window
                    row = {"step": step, "time": time.time(), "cpu_seconds": time.process_time()}
                    row.update({k: float(np.mean(v)) for k, v in window.items()})
                    row["steps_per_s"] = n_window / dt if dt > 0 else math.nan
                    if items_per_step:
                        row[f"{items_name}_per_s"] = row["steps_per_s"] * items_per_step
                    row.update(extra_metrics)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    loss = row.get("loss")
                    if loss is not None:
                        bar.set_postfix(loss=f"{loss:.4f}")
                    window, n_window, t_window = {}, 0, time.perf_counter()
                if step % cfg.ckpt_every == 0 or step == cfg.steps:
                    save(step)
                bar.update(1)
    except KeyboardInterrupt:
        stop["flag"] = True
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, old)
    if stop["flag"] and ckpt.latest_step() != step:
        save(step)
        print(f"stopped at step {step}; checkpoint saved, re-run the same command to resume")
    ckpt.close()
    return step
