"""Checkpoints: exact resume, step bookkeeping, interrupted/damaged saves, shippable weights."""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from musicrl.checkpoint import Checkpointer, CheckpointError, load_weights, save_weights

K = 3  # steps before the checkpoint (and after it)


class Ema(nnx.Variable):
    """A buffer updated outside the gradient, like an RVQ codebook."""


class Toy(nnx.Module):
    def __init__(self, *, width: int = 8, inputs: int = 3, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.l1 = nnx.Linear(inputs, width, rngs=rngs)
        self.l2 = nnx.Linear(width, 2, rngs=rngs)
        self.ema = Ema(jnp.zeros((width,)))
        self.drop = nnx.Dropout(0.25, rngs=rngs)  # an RNG stream that must resume too

    def __call__(self, x):
        h = jax.nn.relu(self.l1(x))
        self.ema[...] = 0.9 * self.ema[...] + 0.1 * jax.lax.stop_gradient(h.mean(0))
        return self.l2(self.drop(h))


def make(width: int = 8, seed: int = 0):
    model = Toy(width=width, seed=seed)
    return model, nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(model, grads)
    return loss


def batch(i: int):
    kx, ky = jax.random.split(jax.random.key(i))
    return jax.random.normal(kx, (4, 3)), jax.random.normal(ky, (4, 2))


def train(model, optimizer, steps):
    for i in steps:
        train_step(model, optimizer, *batch(i))


def snapshot(node, *filters) -> dict[str, np.ndarray]:
    """Every value of nnx.state(node, *filters) as numpy (PRNG keys as their data)."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(node, *filters)):
        value = var.get_value()
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        out["/".join(map(str, path))] = np.asarray(value)
    return out


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def save_steps(directory, steps, *, max_to_keep=5):
    """Saves a Linear whose bias is filled with the step number, at each step."""
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    with Checkpointer(directory, max_to_keep=max_to_keep) as ckpt:
        for s in steps:
            model.bias[...] = jnp.full((3,), float(s))
            ckpt.save(s, model=model, extra={"s": s})
    return model


# ----------------------------------------------------------------------------
# Training checkpoints
# ----------------------------------------------------------------------------

def test_resume_is_bit_identical_to_uninterrupted_training(tmp_path):
    model, optimizer = make()
    train(model, optimizer, range(K))
    extra = {"loader": {"batch": K, "seed": 7}, "config": {"width": 8}, "metrics": {"loss": 0.5}}
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(K, model=model, optimizer=optimizer, extra=extra)
    at_k = snapshot(model)
    train(model, optimizer, range(K, 2 * K))  # the uninterrupted run

    fresh, fresh_opt = make(seed=1)
    assert not np.array_equal(snapshot(fresh)["l1/kernel"], at_k["l1/kernel"])
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        got = ckpt.restore(model=fresh, optimizer=fresh_opt)
    assert got == {**extra, "step": K}
    assert_identical(snapshot(fresh), at_k)
    assert int(fresh_opt.step[...]) == K

    train(fresh, fresh_opt, range(got["loader"]["batch"], 2 * K))
    assert_identical(snapshot(fresh), snapshot(model))  # params, Ema buffer, RNG streams
    assert_identical(snapshot(fresh_opt, nnx.OptState), snapshot(optimizer, nnx.OptState))
    assert int(fresh_opt.step[...]) == 2 * K


def test_restore_without_optimizer_and_missing_optimizer_state(tmp_path):
    model, optimizer = make()
    train(model, optimizer, range(1))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, model=model, optimizer=optimizer)
        ckpt.save(2, model=model)  # model only
        fresh, fresh_opt = make(seed=1)
        assert ckpt.restore(1, model=fresh)["step"] == 1  # evaluation: optimizer not needed
        assert_identical(snapshot(fresh), snapshot(model))
        with pytest.raises(CheckpointError, match="no optimizer state.*optimizer=None"):
            ckpt.restore(model=fresh, optimizer=fresh_opt)


def test_steps_and_max_to_keep(tmp_path):
    directory = tmp_path / "work" / "ckpt"
    ckpt = Checkpointer(directory, max_to_keep=2)
    assert ckpt.latest_step() is None and ckpt.all_steps() == []
    assert not directory.exists()  # only a save creates it
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    for s in (10, 20, 30, 40):
        ckpt.save(s, model=model)
        assert ckpt.latest_step() == s
    assert ckpt.all_steps() == [30, 40]
    assert sorted(p.name for p in directory.iterdir() if p.name[0].isdigit()) == ["30", "40"]
    with pytest.raises(CheckpointError, match="step 40 already exists"):
        ckpt.save(40, model=model)
    with pytest.raises(CheckpointError, match=r"no checkpoint for step 10 .*\[30, 40\]"):
        ckpt.restore(10, model=model)
    ckpt.close()
    with Checkpointer(directory) as again:  # a new process sees the same steps
        assert again.all_steps() == [30, 40] and again.latest_step() == 40


def test_extra_must_be_json(tmp_path):
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(CheckpointError, match="JSON"):
            ckpt.save(1, model=model, extra={"loss": jnp.ones(2)})
        assert ckpt.all_steps() == []


@pytest.mark.parametrize("when", ["mid_save", "at_commit"])
def test_killed_save_keeps_earlier_steps(tmp_path, monkeypatch, when):
    """Orbax writes each item, then the step, as '*.orbax-checkpoint-tmp' folders and
    commits them by renaming. Kill the save at its first rename (items half done) or
    at its last (everything written, the step folder not yet renamed)."""
    save_steps(tmp_path, [1, 2])
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))

    class Killed(BaseException):
        pass

    real_rename = os.rename

    def rename(src, dst, *args, **kwargs):
        src = Path(src)
        if ".orbax-checkpoint-tmp" in src.name and (
                when == "mid_save" or src.parent == tmp_path):
            raise Killed
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(Killed), Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, model=model)
    monkeypatch.undo()

    leftover = [p.name for p in tmp_path.iterdir() if "tmp" in p.name]
    assert leftover == ["3.orbax-checkpoint-tmp"]
    if when == "at_commit":  # fully written, only the final rename missing
        assert (tmp_path / "3.orbax-checkpoint-tmp" / "model" / "_METADATA").is_file()
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [1, 2]
        assert ckpt.restore(model=model)["s"] == 2
        assert (tmp_path / "3.orbax-checkpoint-tmp").exists()  # readers never delete
        ckpt.save(3, model=model)  # a writer clears the leftover and saves the step
        assert ckpt.all_steps() == [1, 2, 3]
    assert not any("tmp" in p.name for p in tmp_path.iterdir())


def test_leftover_temporary_folder_is_ignored(tmp_path):
    save_steps(tmp_path, [1, 2])
    junk = tmp_path / "5.orbax-checkpoint-tmp-1700000000"
    junk.mkdir()
    (junk / "half_written").write_bytes(b"\0" * 10)
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 2
        assert ckpt.restore(model=model)["step"] == 2
        np.testing.assert_array_equal(model.bias[...], np.full(3, 2.0))


@pytest.mark.parametrize("damage", ["data_files", "array_metadata", "extra"])
def test_damaged_newest_step_falls_back_to_older(tmp_path, damage, caplog):
    save_steps(tmp_path, [1, 2, 3])
    step3 = tmp_path / "3"
    if damage == "data_files":  # the OCDBT data files of the model
        for f in (step3 / "model" / "d").iterdir():
            f.unlink()
    elif damage == "array_metadata":
        (step3 / "model" / "_METADATA").unlink()
    else:
        (step3 / "extra" / "metadata").unlink()

    model = nnx.Linear(2, 3, rngs=nnx.Rngs(1))
    before = np.asarray(model.kernel[...])
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [1, 2, 3]  # Orbax still lists a finalized, damaged step
        with pytest.raises(CheckpointError, match="step 3 .* damaged"):
            ckpt.restore(3, model=model)
        np.testing.assert_array_equal(model.kernel[...], before)  # untouched on failure
        with caplog.at_level(logging.WARNING, logger="musicrl.checkpoint"):
            assert ckpt.restore(model=model) == {"s": 2, "step": 2}
        assert "step 3" in caplog.text and "unreadable" in caplog.text
        np.testing.assert_array_equal(model.bias[...], np.full(3, 2.0))
        assert ckpt.all_steps() == [1, 2]
        assert (tmp_path / "3.unreadable").is_dir()  # set aside, not deleted
        ckpt.save(3, model=model)  # training can redo the step
        assert ckpt.latest_step() == 3


def test_shape_mismatch_names_the_parameter(tmp_path):
    model, optimizer = make(width=8)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, model=model, optimizer=optimizer)
        other, other_opt = make(width=16)
        before = snapshot(other)
        with pytest.raises(CheckpointError) as err:
            ckpt.restore(model=other, optimizer=other_opt)
        msg = str(err.value)
        assert "'ema'" in msg and "(8,)" in msg and "(16,)" in msg and "config" in msg
        assert_identical(snapshot(other), before)
        assert ckpt.all_steps() == [1]  # a mismatch is not damage: nothing set aside


def test_structure_mismatch_names_the_missing_variable(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, model=nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
        with pytest.raises(CheckpointError, match="'bias' is in checkpoint step 1 but the model has no"):
            ckpt.restore(model=nnx.Linear(2, 3, use_bias=False, rngs=nnx.Rngs(0)))


def test_missing_directory_and_empty_directory(tmp_path):
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        Checkpointer(tmp_path / "nope").restore(model=model)
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        Checkpointer(tmp_path / "empty").restore(model=model)
    with pytest.raises(CheckpointError, match="max_to_keep"):
        Checkpointer(tmp_path, max_to_keep=0)


# ----------------------------------------------------------------------------
# Inference weights
# ----------------------------------------------------------------------------

def big_toy(seed=0, width=256):
    # ~17k values: large enough that the per-array headers barely count in sizes
    return Toy(width=width, inputs=64, seed=seed)


def test_weights_round_trip_bfloat16(tmp_path):
    model = big_toy()
    model.ema[...] = jax.random.normal(jax.random.key(9), (256,))  # a non-trivial buffer
    meta = {"command": "musicrl train codec", "steps": 2, "metrics": {"loss": 0.25},
            "config": {"width": 256}}
    save_weights(tmp_path / "f32", model, meta=meta, compress=False)
    save_weights(tmp_path / "bf16", model, meta=meta, dtype=jnp.bfloat16, compress=False)

    assert sorted(os.listdir(tmp_path / "bf16")) == ["meta.json", "weights.json", "weights.npz"]
    assert json.loads((tmp_path / "bf16" / "meta.json").read_text()) == meta
    with np.load(tmp_path / "bf16" / "weights.npz", allow_pickle=False) as npz:  # no pickles
        names = set(npz.files)
    assert names == {"l1/kernel", "l1/bias", "l2/kernel", "l2/bias", "ema"}  # no RNG, no opt
    index = json.loads((tmp_path / "bf16" / "weights.json").read_text())["arrays"]
    assert index["ema"] == {"shape": [256], "dtype": "bfloat16", "variable": "Ema"}
    ratio = (os.path.getsize(tmp_path / "bf16" / "weights.npz")
             / os.path.getsize(tmp_path / "f32" / "weights.npz"))
    assert 0.45 < ratio < 0.55

    fresh = big_toy(seed=1)
    assert load_weights(tmp_path / "bf16", fresh) == meta
    want = snapshot(model, nnx.Not(nnx.RngState))
    got = snapshot(fresh, nnx.Not(nnx.RngState))
    for k in want:
        assert got[k].dtype == np.float32  # cast back to the model's dtype
        np.testing.assert_array_equal(got[k], want[k].astype(jnp.bfloat16).astype(np.float32))
    assert not np.array_equal(got["l1/kernel"], want["l1/kernel"])  # bf16 did round

    full = big_toy(seed=2)
    load_weights(tmp_path / "f32", full)
    assert_identical(snapshot(full, nnx.Not(nnx.RngState)), want)


def test_weights_are_deterministic_and_replaced_atomically(tmp_path):
    model = big_toy()
    target = tmp_path / "assets" / "codec"
    save_weights(target, model, meta={"v": 1})
    first = (target / "weights.npz").read_bytes()
    save_weights(target, model, meta={"v": 2})  # replaces the folder
    assert (target / "weights.npz").read_bytes() == first  # same weights, same bytes
    assert load_weights(target, big_toy(seed=3)) == {"v": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["codec"]  # no leftovers

    # A save killed between its two renames leaves the old folder aside; the next
    # load says where it is, and the next save puts it back before replacing it.
    os.rename(target, target.parent / ".codec.old-1")
    with pytest.raises(CheckpointError, match=r"\.codec\.old-1"):
        load_weights(target, model)
    (target.parent / ".codec.tmp-crashed").mkdir()
    save_weights(target, model, meta={"v": 3})
    assert sorted(p.name for p in target.parent.iterdir()) == ["codec"]
    assert load_weights(target, model) == {"v": 3}


def test_weights_errors(tmp_path):
    model = big_toy()
    with pytest.raises(CheckpointError, match="no weights folder"):
        load_weights(tmp_path / "missing", model)
    save_weights(tmp_path / "w", model, meta={}, dtype=jnp.float16)
    with pytest.raises(CheckpointError, match=r"'ema': saved \(256,\) float16.*expects \(128,\)"):
        load_weights(tmp_path / "w", big_toy(width=128))
    with pytest.raises(CheckpointError, match="JSON"):
        save_weights(tmp_path / "x", model, meta={"bad": object()})
    assert not (tmp_path / "x").exists()
    # A truncated / LFS-pointer npz is caught by the checksum, before NumPy sees it.
    (tmp_path / "w" / "weights.npz").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(CheckpointError, match="checksum"):
        load_weights(tmp_path / "w", model)
    (tmp_path / "w" / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="lacks meta.json"):
        load_weights(tmp_path / "w", model)


def test_weights_filter_selects_variables(tmp_path):
    model = big_toy()
    save_weights(tmp_path / "params", model, meta={}, filter=nnx.Param)
    with zipfile.ZipFile(tmp_path / "params" / "weights.npz") as zf:
        assert "ema.npy" not in zf.namelist() and "l1/kernel.npy" in zf.namelist()
    with pytest.raises(CheckpointError, match="'ema' is in the model but not in"):
        load_weights(tmp_path / "params", big_toy())  # the default filter wants the Ema too
    fresh = big_toy(seed=5)
    load_weights(tmp_path / "params", fresh, filter=nnx.Param)
    assert_identical(snapshot(fresh, nnx.Param), snapshot(model, nnx.Param))


def test_weights_skip_training_only_state_and_keep_scalars(tmp_path):
    """A codec saved without its EMA sums loads (they keep init values) and decodes the same;
    0-d parameters stay 0-d; deflated files are smaller than stored ones."""
    from musicrl.codec.config import CodecConfig
    from musicrl.codec.model import Codec
    from musicrl.codec.quantizer import TRAINING_ONLY
    from musicrl.config import presets_of

    cfg = presets_of(CodecConfig)["tiny"]
    a = Codec(cfg, rngs=nnx.Rngs(0, vq=1))
    save_weights(tmp_path / "full", a, meta={}, compress=False)
    save_weights(tmp_path / "lean", a, meta={}, skip=TRAINING_ONLY)
    names = json.loads((tmp_path / "lean" / "weights.json").read_text())["arrays"]
    assert "rvq/codebook" in names and not any(n.endswith("embed_sum") for n in names)
    assert (tmp_path / "lean" / "weights.npz").stat().st_size < \
        (tmp_path / "full" / "weights.npz").stat().st_size
    b = Codec(cfg, rngs=nnx.Rngs(5, vq=6))
    with pytest.raises(CheckpointError, match="is in the model but not in"):
        load_weights(tmp_path / "lean", b)                    # not optional: refused
    load_weights(tmp_path / "lean", b, optional=TRAINING_ONLY)
    wav = jax.random.normal(jax.random.key(0), (1, 4 * cfg.hop))
    np.testing.assert_array_equal(np.asarray(a.decode(a.encode(wav))),
                                  np.asarray(b.decode(b.encode(wav))))

    class Scalar(nnx.Module):
        def __init__(self):
            self.s = nnx.Param(jnp.asarray(1.5, jnp.float32))

    save_weights(tmp_path / "s", Scalar(), meta={}, dtype=jnp.bfloat16)
    m = Scalar()
    m.s[...] = 0.0
    load_weights(tmp_path / "s", m)
    assert m.s[...].shape == () and float(m.s[...]) == 1.5
