"""Checkpoints: resumable training state (Orbax) and shippable inference weights (npz).

The only module of the project that imports Orbax (STYLE §8). Two formats, for
two jobs:

**Training checkpoints** (:class:`Checkpointer`), one Orbax V0
``CheckpointManager`` over a work dir::

    <directory>/<step>/
      model/       StandardSave of nnx.state(model)  (every Variable, RNG streams included)
      optimizer/   StandardSave of nnx.state(optimizer, nnx.OptState)  (its step + opt_state)
      extra/       JsonSave of the caller's dict (loader position, config, metrics)

  Saves are synchronous and atomic. On a local (POSIX) file system Orbax writes
  the step into ``<step>.orbax-checkpoint-tmp/`` (each item, in turn, into
  ``<item>.orbax-checkpoint-tmp/`` renamed to ``<item>/`` inside it) and, once
  every file is written, adds ``commit_success.txt`` and renames the folder to
  ``<step>`` (one ``os.rename``). Orbax lists only folders whose name is a bare step number, so a
  save killed at any point leaves the earlier steps untouched and the newest
  step simply absent; the ``*.orbax-checkpoint-tmp*`` leftover is ignored when
  listing and restoring, and the next :meth:`Checkpointer.save` deletes it
  (readers never delete: they could race a save in progress). A step folder
  that was finalized but later damaged (a file deleted, a disk error) is still
  listed by Orbax; ``restore()`` of the latest step then falls back to the newest
  step that reads back, and renames the damaged one to ``<step>.unreadable`` so
  that training can resume and save that step again (nothing is deleted).
  Steps beyond ``max_to_keep`` are deleted (rmtree, not atomic) after the new
  step is committed; a kill during that deletion can only damage the oldest
  step, which the fallback above never needs while a newer step reads back.

**Inference weights** (:func:`save_weights`), committed under ``assets/``::

    <path>/
      weights.npz    one .npy per Variable (deflated), named by its path ("encoder/conv/kernel")
      weights.json   index: per array its shape, stored dtype and Variable type; sha256 of the npz
      meta.json      the caller's metadata (command, steps, time, metrics, config)

  Why npz and not Orbax: an Orbax (OCDBT) checkpoint is a dozen files with
  random hashed names that all change on every save, which is noise in git.
  The npz is one file that plain NumPy reads without JAX or Orbax, holds no
  pickles (``allow_pickle=False`` both ways), and is byte-identical for
  identical weights (fixed zip timestamps), so an unchanged model is no diff.
  It is deflated (≈ 20 % smaller for bf16) so the checked-out ``assets/`` stays
  small; ``np.load`` reads deflated and stored members alike. safetensors would do
  as well but is not a dependency. Types NumPy cannot name (bfloat16, float8)
  are stored as their bit pattern (uint16, uint8) and named in the index.
  The folder is replaced atomically: written next to the target, then swapped
  in by renames (see :func:`save_weights`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from musicrl.errors import MusicrlError

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "WEIGHTS_FILTER",
    "save_weights",
    "load_weights",
]

log = logging.getLogger(__name__)

Path_ = tuple[str, ...]  # a Variable's path in the module tree, every part as a string

# Variables an inference model needs: everything but RNG streams and optimizer state.
WEIGHTS_FILTER = nnx.Not(nnx.Any(nnx.RngState, nnx.OptState))

_ITEMS = ("model", "optimizer")
_UNREADABLE_SUFFIX = ".unreadable"
_WEIGHTS_FORMAT = "musicrl-weights/1"
_NPZ, _INDEX, _META = "weights.npz", "weights.json", "meta.json"
_CONFIG_HINT = (
    "The checkpoint was probably written with another model config: restore with "
    "the config it was saved with (it is in the checkpoint's extra/meta 'config'), "
    "or use a new directory.")


class CheckpointError(MusicrlError, ValueError):
    """A checkpoint could not be written or read. The message says why and what to do."""


class _Unreadable(Exception):
    """A finalized step whose files do not read back (damaged after the save)."""


# ----------------------------------------------------------------------------
# State <-> flat arrays
# ----------------------------------------------------------------------------

def _name(path: Path_) -> str:
    return "/".join(path)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _variables(state: nnx.State) -> dict[Path_, nnx.Variable]:
    """The Variables of a State by string path (sorted)."""
    return {tuple(str(p) for p in path): var for path, var in nnx.to_flat_state(state)}


def _arrays(state: nnx.State) -> dict[Path_, jax.Array]:
    """The values of a State by path. Typed PRNG keys become their raw uint32 data."""
    out = {}
    for path, var in _variables(state).items():
        value = var.get_value() if isinstance(var, nnx.Variable) else var
        out[path] = jax.random.key_data(value) if _is_key(value) else jnp.asarray(value)
    return out


def _abstract(arrays: Mapping[Path_, jax.Array]) -> dict[Path_, jax.ShapeDtypeStruct]:
    """Shape, dtype and sharding of each array: the restore target."""
    return {p: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None))
            for p, a in arrays.items()}


def _nest(flat: Mapping[Path_, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _flatten(tree: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        out.update(_flatten(v, (*prefix, str(k))))
    return out


def _with_values(state: nnx.State, values: Mapping[Path_, Any]) -> nnx.State:
    """A copy of ``state`` holding ``values`` (cast and placed like the current ones)."""
    items = []
    for path, var in nnx.to_flat_state(state):
        new = values[tuple(str(p) for p in path)]
        old = var.get_value()
        if _is_key(old):
            new = jax.random.wrap_key_data(jnp.asarray(new, jnp.uint32),
                                           impl=jax.random.key_impl(old))
        else:
            new = jnp.asarray(new, dtype=old.dtype)
        if isinstance(old, jax.Array):
            new = jax.device_put(new, old.sharding)
        items.append((path, var.copy(new)))
    return nnx.from_flat_state(items)


def _check_compatible(saved: Mapping[Path_, tuple[tuple[int, ...], Any]],
                      expected: Mapping[Path_, tuple[tuple[int, ...], Any]],
                      *, what: str, where: str, check_dtype: bool) -> None:
    """Raises CheckpointError naming the first path whose presence/shape/dtype differs."""
    problems = []
    for path in sorted(set(saved) | set(expected)):
        name = f"{what} '{_name(path)}'"
        if path not in saved:
            problems.append(f"{name} is in the model but not in {where}")
        elif path not in expected:
            problems.append(f"{name} is in {where} but the model has no such variable")
        else:
            (s_shape, s_dtype), (e_shape, e_dtype) = saved[path], expected[path]
            if tuple(s_shape) != tuple(e_shape) or (
                    check_dtype and jnp.dtype(s_dtype) != jnp.dtype(e_dtype)):
                problems.append(
                    f"{name}: saved {tuple(s_shape)} {jnp.dtype(s_dtype).name}, "
                    f"the model expects {tuple(e_shape)} {jnp.dtype(e_dtype).name}")
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise CheckpointError(f"{problems[0]}{more}. {_CONFIG_HINT}")


def _short(e: BaseException) -> str:
    """One line of an exception (tensorstore errors carry a page of JSON spec)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text.split(" [tensorstore_spec=")[0]
    return f"{type(e).__name__}: {text[:300]}"


def _json_ready(obj: Any, what: str) -> None:
    try:
        json.dumps(obj)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{what} must be JSON-serializable ({e}); convert arrays with .tolist() "
            "and numpy scalars with float()/int()") from None


# ----------------------------------------------------------------------------
# Training checkpoints
# ----------------------------------------------------------------------------

def _registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for item in _ITEMS:
        registry.add(item, ocp.args.StandardSave, ocp.StandardCheckpointHandler)
        registry.add(item, ocp.args.StandardRestore, ocp.StandardCheckpointHandler)
    registry.add("extra", ocp.args.JsonSave, ocp.JsonCheckpointHandler)
    registry.add("extra", ocp.args.JsonRestore, ocp.JsonCheckpointHandler)
    return registry


class Checkpointer:
    """Training checkpoints in a work dir: model state, optimizer state, step, and a
    JSON 'extra' dict (loader position, config, metrics).

    Usage::

        with Checkpointer(workdir / "checkpoints") as ckpt:
            if ckpt.latest_step() is not None:
                extra = ckpt.restore(model=model, optimizer=optimizer)
                loader.set_state(extra["loader"])
            ...
            ckpt.save(step, model=model, optimizer=optimizer,
                      extra={"loader": loader.get_state(), "config": to_dict(cfg)})

    Args:
      directory: the checkpoint folder; created by the first :meth:`save`.
      max_to_keep: how many of the newest steps to keep (None keeps all).
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3):
        if max_to_keep is not None and max_to_keep < 1:
            raise CheckpointError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
        self.directory = Path(os.path.abspath(directory))
        self.max_to_keep = max_to_keep
        self._manager: ocp.CheckpointManager | None = None

    # -- the Orbax manager, opened once the directory exists ------------------

    def _open(self, *, create: bool) -> ocp.CheckpointManager | None:
        if self._manager is None:
            if self.directory.exists() and not self.directory.is_dir():
                raise CheckpointError(f"{self.directory} is a file, not a checkpoint directory")
            if not self.directory.exists():
                if not create:
                    return None
                self.directory.mkdir(parents=True)
            options = ocp.CheckpointManagerOptions(
                enable_async_checkpointing=False,  # save() returns once the step is final
                preservation_policy=ocp.checkpoint_managers.LatestN(self.max_to_keep),
                # Leftovers of interrupted saves are removed by save() (a writer), not
                # here: a reader opening the dir must not delete a save in progress.
                cleanup_tmp_directories=False,
                create=False,
            )
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, handler_registry=_registry())
        return self._manager

    def all_steps(self) -> list[int]:
        """The finalized steps on disk, ascending (interrupted saves are not steps)."""
        manager = self._open(create=False)
        if manager is None:
            return []
        manager.reload()  # another process (the trainer) may have written since
        return sorted(manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest finalized step, or None if there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    # -- save -----------------------------------------------------------------

    def save(self, step: int, *, model: nnx.Module, optimizer: nnx.Optimizer | None = None,
             extra: dict | None = None) -> None:
        """Writes step ``step`` and returns when it is on disk (atomic, synchronous).

        Args:
          step: the training step (a new step number: steps are never overwritten).
          model: saves ``nnx.state(model)`` (every Variable, RNG streams included,
            so that dropout continues exactly after a resume).
          optimizer: saves its ``nnx.OptState`` variables (step count and optax
            state), not the model it updates.
          extra: a JSON-serializable dict returned by :meth:`restore`.

        Raises:
          CheckpointError: the step exists already, or ``extra`` is not JSON.
        """
        step = int(step)
        if step < 0:
            raise CheckpointError(f"step must be >= 0, got {step}")
        extra = dict(extra or {})
        _json_ready(extra, "extra")
        items: dict[str, Any] = {
            "model": ocp.args.StandardSave(_nest(_arrays(nnx.state(model)))),
            "extra": ocp.args.JsonSave(extra),
        }
        if optimizer is not None:
            opt_state = _arrays(nnx.state(optimizer, nnx.OptState))
            items["optimizer"] = ocp.args.StandardSave(_nest(opt_state))
        manager = self._open(create=True)
        self._remove_interrupted_saves()
        manager.reload()
        if step in manager.all_steps():
            raise CheckpointError(
                f"step {step} already exists in {self.directory}; checkpoints are never "
                f"overwritten. Resume from the latest step ({manager.latest_step()}) instead, "
                "or delete that step folder if you mean to redo it.")
        manager.save(step, args=ocp.args.Composite(**items), force=True)
        manager.wait_until_finished()  # a no-op when synchronous; kept for safety
        if step not in manager.all_steps():
            raise CheckpointError(f"saving step {step} to {self.directory} did not produce it")

    def _remove_interrupted_saves(self) -> None:
        """Deletes ``<step>.orbax-checkpoint-tmp*`` folders: saves that never finished."""
        for tmp in self.directory.glob(f"*{ocp.path.step.TMP_DIR_SUFFIX}*"):
            if tmp.is_dir():
                log.info("removing the interrupted save %s", tmp)
                shutil.rmtree(tmp, ignore_errors=True)

    # -- restore --------------------------------------------------------------

    def restore(self, step: int | None = None, *, model: nnx.Module,
                optimizer: nnx.Optimizer | None = None) -> dict:
        """Restores a step in place into ``model`` (and ``optimizer``).

        The current state of the (freshly built) objects is the target: its
        shapes, dtypes and shardings. Nothing is modified unless every item
        reads back and matches.

        Args:
          step: the step to restore; None restores the latest readable one (a
            damaged newer step is renamed ``<step>.unreadable`` and skipped, with
            a warning).
          model: the model to fill.
          optimizer: the optimizer to fill, or None to leave it alone (e.g. for
            evaluation).

        Returns:
          The ``extra`` dict saved with the step, plus ``"step"``.

        Raises:
          CheckpointError: no checkpoint, no such step, a structure/shape mismatch
            (naming the first differing variable), or unreadable files.
        """
        manager = self._open(create=False)
        if manager is None:
            raise CheckpointError(
                f"no checkpoint directory {self.directory}: nothing was saved there yet "
                "(check the work dir path)")
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(
                f"no checkpoint in {self.directory}: it holds no finalized step folder "
                "(interrupted saves, '*.orbax-checkpoint-tmp*', do not count)")
        if step is not None:
            if int(step) not in steps:
                raise CheckpointError(
                    f"no checkpoint for step {step} in {self.directory}; available: {steps}")
            try:
                return self._restore_step(manager, int(step), model, optimizer)
            except _Unreadable as e:
                raise CheckpointError(
                    f"step {step} in {self.directory} is damaged and cannot be read ({e}). "
                    f"Other steps: {[s for s in steps if s != step]}") from e

        failed: list[tuple[int, _Unreadable]] = []
        for s in reversed(steps):
            try:
                extra = self._restore_step(manager, s, model, optimizer)
            except _Unreadable as e:
                failed.append((s, e))
                continue
            for bad, err in failed:  # only once an older step proved restorable
                self._set_aside(bad, err)
            return extra
        raise CheckpointError(
            f"no step in {self.directory} could be read; newest ({failed[0][0]}): {failed[0][1]}")

    def _restore_step(self, manager: ocp.CheckpointManager, step: int, model: nnx.Module,
                      optimizer: nnx.Optimizer | None) -> dict:
        states = {"model": nnx.state(model)}
        if optimizer is not None:
            states["optimizer"] = nnx.state(optimizer, nnx.OptState)
        targets = {name: _abstract(_arrays(st)) for name, st in states.items()}

        try:
            metadata = manager.item_metadata(step)
        except Exception as e:  # any read failure here means a damaged step
            raise _Unreadable(f"metadata: {_short(e)}") from e
        for name, target in targets.items():
            item = metadata.get(name) if metadata is not None else None
            if item is None:
                if name == "optimizer" and self._has_item(step, "model"):
                    raise CheckpointError(
                        f"step {step} in {self.directory} holds no optimizer state (it was "
                        "saved with optimizer=None); restore with optimizer=None and start "
                        "the optimizer afresh")
                raise _Unreadable(f"no readable '{name}' item")
            saved = {p: (m.shape, m.dtype) for p, m in _flatten(item.tree).items()}
            expected = {p: (a.shape, a.dtype) for p, a in target.items()}
            _check_compatible(saved, expected, what=f"{name} variable",
                              where=f"checkpoint step {step}", check_dtype=True)

        args = {name: ocp.args.StandardRestore(_nest(t)) for name, t in targets.items()}
        try:
            restored = manager.restore(
                step, args=ocp.args.Composite(**args, extra=ocp.args.JsonRestore()))
        except Exception as e:  # the structure matched, so the files are damaged
            raise _Unreadable(_short(e)) from e
        if restored.get("extra") is None:
            raise _Unreadable("no readable 'extra' item")

        new_states = {name: _with_values(states[name], _flatten(restored[name]))
                      for name in states}
        nnx.update(model, new_states["model"])
        if optimizer is not None:
            nnx.update(optimizer, new_states["optimizer"])
        return {**restored["extra"], "step": step}

    def _has_item(self, step: int, name: str) -> bool:
        return (self.directory / str(step) / name).is_dir()

    def _set_aside(self, step: int, err: Exception) -> None:
        src = self.directory / str(step)
        dst = self.directory / f"{step}{_UNREADABLE_SUFFIX}"
        if dst.exists():
            dst = self.directory / f"{step}{_UNREADABLE_SUFFIX}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(src, dst)
            moved = f"renamed it to {dst.name}"
        except OSError as e:
            moved = f"could not rename it ({e})"
        log.warning("checkpoint step %d in %s is unreadable (%s); %s and restored an older "
                    "step", step, self.directory, err, moved)
        if self._manager is not None:
            self._manager.reload()

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """Waits for pending work (deletions of old steps) and releases Orbax resources."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------
# Inference weights
# ----------------------------------------------------------------------------

def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray], compress: bool = False) -> None:
    """Like np.savez (or savez_compressed), but deterministic: fixed member timestamps."""
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = mode
            with zf.open(info, "w", force_zip64=True) as f:
                # np.asarray(order='C') keeps 0-d arrays 0-d (ascontiguousarray makes them 1-d)
                np.lib.format.write_array(f, np.asarray(arr, order="C"), allow_pickle=False)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _index_json(sha256: str, arrays: Mapping[str, dict]) -> str:
    """The index, one line per array, so that a git diff shows what changed."""
    lines = [f'{{"format": "{_WEIGHTS_FORMAT}", "sha256": "{sha256}", "arrays": {{']
    rows = [f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in arrays.items()]
    return "\n".join(lines + [",\n".join(rows), "}}"]) + "\n"


def _leftovers(path: Path, kind: str) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.{kind}-*"))


def save_weights(path: str | os.PathLike, model: nnx.Module, *, meta: dict,
                 dtype: Any = None, filter: Any = WEIGHTS_FILTER, compress: bool = True,
                 skip: tuple[str, ...] = ()) -> None:
    """Writes a model's inference weights to the folder ``path`` (replacing it atomically).

    The folder holds ``weights.npz``, ``weights.json`` (index) and ``meta.json``;
    see the module docstring. It is written as a hidden sibling and renamed into
    place; an existing folder is first renamed away and deleted afterwards, so a
    kill at any moment leaves either the old or the new folder at ``path``, or
    (between the two renames) both complete copies beside it, which the next
    :func:`save_weights` puts back and :func:`load_weights` points to.

    Args:
      path: the folder to write, e.g. ``assets/small/codec``.
      model: the model; ``nnx.state(model, filter)`` is saved.
      meta: JSON-serializable metadata (command, steps, time, metrics, config).
      dtype: if set (e.g. ``jnp.bfloat16``), floating arrays are cast to it to
        shrink the folder; integer arrays are kept as they are.
      filter: which Variables to save; by default all but RNG and optimizer state
        (custom Variable types such as codebooks included).
      compress: deflate the arrays (≈ 20 % smaller for bf16 weights; ``np.load`` reads
        both kinds).
      skip: leave out variables whose path ends with one of these names (training-only
        state, e.g. a quantizer's EMA sums); load them with ``optional=`` the same names.
    """
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"meta must be a dict, got {type(meta).__name__}")
    _json_ready(dict(meta), "meta")
    target = Path(os.path.abspath(path))
    state = nnx.state(model, filter)
    variables = _variables(state)
    if not variables:
        raise CheckpointError(f"the filter {filter!r} selects no variables of the model")

    arrays, index = {}, {}
    for p, var in variables.items():
        if _matches(p, skip):
            continue
        value = var.get_value()
        if _is_key(value):
            value = jax.random.key_data(value)
        value = jnp.asarray(value)
        if dtype is not None and jnp.issubdtype(value.dtype, jnp.floating):
            value = value.astype(dtype)
        arr = np.asarray(value)
        stored = arr.view(f"u{arr.dtype.itemsize}") if arr.dtype.kind == "V" else arr
        arrays[_name(p)] = stored
        index[_name(p)] = {"shape": list(arr.shape), "dtype": arr.dtype.name,
                           "variable": type(var).__name__}

    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():  # a save killed between its two renames: put the old one back
        old = _leftovers(target, "old")
        if old:
            os.rename(old[-1], target)
    for stale in _leftovers(target, "tmp") + _leftovers(target, "old"):
        shutil.rmtree(stale, ignore_errors=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_npz(tmp / _NPZ, arrays, compress=compress)
        (tmp / _INDEX).write_text(_index_json(_sha256(tmp / _NPZ), index))
        (tmp / _META).write_text(json.dumps(dict(meta), indent=2, sort_keys=True) + "\n")
        for name in (_NPZ, _INDEX, _META):
            _fsync(tmp / name)
        _fsync(tmp)
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            _fsync(target.parent)
            shutil.rmtree(old)
        else:
            os.rename(tmp, target)
            _fsync(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _matches(path: Path_, names: tuple[str, ...]) -> bool:
    name = _name(path)
    return any(name == n or name.endswith("/" + n) for n in names)


def load_weights(path: str | os.PathLike, model: nnx.Module, *,
                 filter: Any = WEIGHTS_FILTER, optional: tuple[str, ...] = ()) -> dict:
    """Loads :func:`save_weights` output into ``model`` in place and returns its meta.

    Arrays are cast back to the model's dtypes. Every variable selected by
    ``filter`` must be in the folder with the same shape, and vice versa;
    nothing is modified otherwise. Variables named in ``optional`` (path suffixes) may be
    absent from the folder (saved with ``skip=``); they keep the model's current values.

    Raises:
      CheckpointError: missing or damaged folder, or a variable that is missing
        or has another shape (named in the message).
    """
    folder = Path(os.path.abspath(path))
    if not folder.is_dir():
        hint = ""
        old = _leftovers(folder, "old")
        if old:
            hint = (f" An interrupted save_weights left the previous weights in {old[-1]}: "
                    f"rename it to {folder.name}, or save again.")
        raise CheckpointError(f"no weights folder at {folder} (expected {_NPZ}, {_INDEX} and "
                              f"{_META} written by save_weights).{hint}")
    missing = [n for n in (_NPZ, _INDEX, _META) if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"weights folder {folder} lacks {', '.join(missing)}; it was not "
                              "written by save_weights or was damaged: save it again")
    try:
        header = json.loads((folder / _INDEX).read_text())
        meta = json.loads((folder / _META).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"weights folder {folder} has a damaged JSON file: {e}") from e
    if header.get("format") != _WEIGHTS_FORMAT:
        raise CheckpointError(f"{folder / _INDEX} has format {header.get('format')!r}; this "
                              f"version reads {_WEIGHTS_FORMAT!r}")
    if _sha256(folder / _NPZ) != header.get("sha256"):
        raise CheckpointError(
            f"{folder / _NPZ} does not match the checksum in {_INDEX}: the file is damaged or "
            "is a Git LFS pointer (run `git lfs pull`), or was edited; save the weights again")

    index = {tuple(name.split("/")): entry for name, entry in header["arrays"].items()}
    state = nnx.state(model, filter)
    expected = {}
    for p, var in _variables(state).items():
        value = var.get_value()
        value = jax.random.key_data(value) if _is_key(value) else value
        expected[p] = (tuple(value.shape), value.dtype)
    saved = {p: (tuple(e["shape"]), e["dtype"]) for p, e in index.items()}
    absent = {p for p in expected if p not in saved and _matches(p, optional)}
    _check_compatible(saved, {p: v for p, v in expected.items() if p not in absent},
                      what="variable", where=f"the weights at {folder}", check_dtype=False)

    values = {}
    with np.load(folder / _NPZ, allow_pickle=False) as npz:
        for p, entry in index.items():
            arr = npz[_name(p)]
            dtype = np.dtype(jnp.dtype(entry["dtype"]))
            arr = arr.view(dtype) if arr.dtype != dtype else arr
            # files written before 0-d arrays were kept 0-d hold scalars as [1]
            values[p] = arr.reshape(entry["shape"])
    for p, var in _variables(state).items():
        if p in absent:
            values[p] = np.asarray(var.get_value())
    nnx.update(model, _with_values(state, values))
    return meta
