"""The system registry (app/systems.py) and the bounded job queue (app/jobs.py)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from app.jobs import JobQueue, QueueFull
from app.systems import (
    DEFAULT_SYSTEMS,
    Generator,
    SystemConfigError,
    SystemRegistry,
    SystemUnavailable,
)
from tests.app.conftest import ToneGenerator, tone_systems


def test_tone_generator_is_a_deterministic_generator():
    g = ToneGenerator(name="t")
    assert isinstance(g, Generator)
    a = g.generate(["x", "x"], 1.0, 3, 3.0, 1.0)
    assert a.shape == (2, 16000) and a.dtype == np.float32
    assert np.abs(a).max() <= 1.0
    assert not np.allclose(a[0], a[1])                       # variations differ
    np.testing.assert_array_equal(a, g.generate(["x", "x"], 1.0, 3, 3.0, 1.0))
    assert not np.allclose(a, g.generate(["x", "x"], 1.0, 4, 3.0, 1.0))


def test_registry_from_file_json_and_toml(tmp_path):
    j = tmp_path / "s.json"
    j.write_text(json.dumps(tone_systems()))
    reg = SystemRegistry.from_file(j)
    assert reg.names == ["tone-low", "tone-mid", "tone-high"]
    audio, sr, settings = reg.generate("tone-high", ["p"], 0.5, 1)
    assert audio.shape == (1, 8000) and sr == 16000
    assert settings["guidance"] == 2.0 and settings["temperature"] == 0.7 and settings["seed"] == 1
    # Overrides are applied and recorded.
    _, _, s2 = reg.generate("tone-high", ["p"], 0.5, 1, guidance=5.0, temperature=1.5)
    assert s2["guidance"] == 5.0 and s2["temperature"] == 1.5
    # Generators load once and are shared between calls.
    assert reg.get("tone-high") is reg.get("tone-high")

    t = tmp_path / "s.toml"
    ref = tone_systems()["systems"][0]["factory"]
    t.write_text(f'[[systems]]\nname = "a"\nfactory = "{ref}"\n'
                 f'[[systems]]\nname = "b"\nfactory = "{ref}"\nguidance = 1.0\n')
    assert SystemRegistry.from_file(t).spec("b").guidance == 1.0


@pytest.mark.parametrize("data, match", [
    ({"systems": []}, "no systems"),
    ({"systems": [{"name": "x"}]}, "exactly one of 'weights'"),
    ({"systems": [{"name": "x", "weights": "w", "factory": "a:b"}]}, "exactly one"),
    ({"systems": [{"name": "bad name!", "weights": "w"}]}, "name must be"),
    ({"systems": [{"name": "x", "weights": "w", "guidance": -1}]}, "guidance"),
    ({"systems": [{"name": "x", "weights": "w", "temperature": 0}]}, "temperature"),
    ({"systems": [{"name": "x", "weights": "w", "colour": 1}]}, "unknown keys"),
    ({"systems": [{"name": "x", "weights": "w"}, {"name": "x", "weights": "v"}]}, "twice"),
    ({"systems": [{"name": "x", "weights": "w"}], "merge": {"system": "y"}}, "merge.system"),
    ({"systems": [{"name": "x", "weights": "w"}], "extra": 1}, "unknown top-level"),
    ({"systems": [{"name": "x", "weights": "w", "best_of": 0}]}, "best_of"),
    ({"systems": [{"name": "x", "weights": "w", "best_of": 2.5}]}, "best_of"),
    ({"systems": [{"name": "x", "factory": "a:b", "best_of": 2}]}, "best_of works with"),
    ({"systems": [{"name": "x", "weights": "w", "semantic_best_of": 0}]}, "semantic_best_of"),
    ({"systems": [{"name": "x", "factory": "a:b", "semantic_best_of": 2}]},
     "semantic_best_of works with"),
    ({"systems": [{"name": "x", "weights": "w", "tempo": 3}]}, "tempo must be"),
    ({"systems": [{"name": "x", "weights": "w", "tempo_combine": "max"}]},
     "tempo_combine must be"),
    ({"systems": [{"name": "x", "weights": "w", "mode_combine": "max"}]},
     "mode_combine must be"),
    ({"systems": [{"name": "x", "weights": "w", "mode_reward": 1}]}, "mode_reward must be"),
    ({"systems": [{"name": "x", "weights": "w", "tempo": "none"}]}, "nothing to select by"),
    ({"systems": [{"name": "x", "weights": "w", "acoustic_best_of": 2}]}, "go together"),
    ({"systems": [{"name": "x", "weights": "w", "acoustic_mode_reward": "m"}]}, "go together"),
    ({"systems": [{"name": "x", "weights": "w", "acoustic_best_of": 2,
                   "acoustic_mode_reward": "m", "acoustic_mode_combine": "max"}]},
     "acoustic_mode_combine must be"),
    ({"systems": [{"name": "x", "weights": "w", "acoustic_tempo_reward": "t"}]}, "go together"),
    ({"systems": [{"name": "x", "weights": "w", "acoustic_best_of": 2,
                   "acoustic_tempo_reward": 3}]}, "go together"),
    ({"systems": [{"name": "x", "weights": "w", "acoustic_best_of": 2,
                   "acoustic_tempo_reward": "t", "acoustic_tempo_combine": "max"}]},
     "acoustic_tempo_combine must be"),
])
def test_registry_refuses_bad_configs(data, match):
    with pytest.raises(SystemConfigError, match=match):
        SystemRegistry.from_dict(data)


def test_bad_json_file_is_named(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{not json")
    with pytest.raises(SystemConfigError, match="not valid JSON"):
        SystemRegistry.from_file(p)
    with pytest.raises(SystemConfigError, match="does not exist"):
        SystemRegistry.from_file(tmp_path / "missing.json")


def test_unavailable_systems_say_why(tmp_path):
    reg = SystemRegistry.from_dict({"systems": [
        {"name": "gone", "weights": str(tmp_path / "nope")},
        {"name": "badref", "factory": "no_such_module_xyz:make"},
        {"name": "badfile", "factory": str(tmp_path / "none.py") + ":make"},
    ]})
    with pytest.raises(SystemUnavailable, match="does not exist"):
        reg.get("gone")
    with pytest.raises(SystemUnavailable, match="cannot import"):
        reg.get("badref")
    with pytest.raises(SystemUnavailable, match="does not exist"):
        reg.get("badfile")
    with pytest.raises(KeyError, match="unknown system"):
        reg.get("other")


def test_default_registry_uses_the_bundled_pipeline_lazily():
    reg = SystemRegistry.default()
    assert reg.names == [s["name"] for s in DEFAULT_SYSTEMS["systems"]]
    assert reg._generators == {}  # nothing loaded until a request needs it


def test_merge_hook_passes_mix_only_to_the_merge_system(tmp_path):
    reg = SystemRegistry.from_dict(tone_systems(merge=True))
    assert reg.merge.system == "tone-mid" and reg.merge.default == 0.5
    a0, _, s0 = reg.generate("tone-mid", ["p"], 0.5, 1, mix=0.0)
    a1, _, s1 = reg.generate("tone-mid", ["p"], 0.5, 1, mix=1.0)
    assert s0["mix"] == 0.0 and s1["mix"] == 1.0 and not np.allclose(a0, a1)
    with pytest.raises(ValueError, match="no quality/diversity mix"):
        reg.generate("tone-low", ["p"], 0.5, 1, mix=0.5)


def test_job_queue_is_bounded_fifo_and_times_jobs():
    q = JobQueue(workers=1, max_pending=2)
    gate = threading.Event()
    try:
        first = q.submit(gate.wait, 10)
        while first.started is None:
            time.sleep(0.01)
        second = q.submit(lambda: "two")
        third = q.submit(lambda: "three")
        assert q.position(second) == 1 and q.position(third) == 2
        with pytest.raises(QueueFull, match="busy"):
            q.submit(lambda: "refused")
        assert q.stats()["refused"] == 1
        time.sleep(0.1)
        gate.set()
        assert third.result(5) == "three" and second.result(5) == "two"
        assert third.queue_wait >= 0.1 and third.run_seconds >= 0
        assert second.started <= third.started
    finally:
        gate.set()
        q.shutdown()


def test_job_errors_reach_the_caller():
    q = JobQueue(workers=1, max_pending=1)
    try:
        job = q.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            job.result(5)
        assert q.submit(lambda: 7).result(5) == 7      # the worker survived
    finally:
        q.shutdown()


def test_registry_serves_a_real_pipeline_bundle(tmp_path):
    """End to end through the app's adapter with a real (tiny, random) pipeline bundle."""
    from musicrl.testing import tiny_bundle

    bundle = tiny_bundle(tmp_path / "bundle")
    reg = SystemRegistry.from_dict({"systems": [
        {"name": "tiny-cfg3", "weights": str(bundle), "guidance": 3.0, "temperature": 1.0},
        {"name": "tiny-cfg1", "weights": str(bundle), "guidance": 1.0, "temperature": 1.0},
        {"name": "tiny-best2", "weights": str(bundle), "guidance": 3.0, "best_of": 2}]})
    a, sr, settings = reg.generate("tiny-cfg3", ["a calm piano piece"], 1.0, seed=0)
    b, _, _ = reg.generate("tiny-cfg3", ["a calm piano piece"], 1.0, seed=0)
    c, _, _ = reg.generate("tiny-cfg1", ["a calm piano piece"], 1.0, seed=0)
    assert sr == 16_000 and a.shape == (1, 16_000)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)          # guidance reaches the sampler
    assert settings["guidance"] == 3.0 and "best_of" not in settings
    d, _, s_best = reg.generate("tiny-best2", ["a calm piano piece"], 1.0, seed=0)
    assert s_best["best_of"] == 2 and reg.get("tiny-best2").pipeline.last_scores.shape == (1, 2)
    assert d.shape == a.shape


def test_registry_semantic_best_of_by_a_tempo_model(tmp_path):
    """A system with ``semantic_best_of`` ranks stage S's candidates with its tempo model."""
    import dataclasses

    from flax import nnx

    from musicrl.config import presets_of
    from musicrl.testing import tiny_bundle
    from rewards.tempo import TempoConfig, TempoModel, save_tempo

    bundle = tiny_bundle(tmp_path / "bundle")
    reg = SystemRegistry.from_dict({"systems": [
        {"name": "tiny-tempo3", "weights": str(bundle), "semantic_best_of": 3,
         "tempo": str(tmp_path / "tempo")}]})
    with pytest.raises(SystemUnavailable, match="no tempo model"):
        reg.generate("tiny-tempo3", ["drums at 120 bpm"], 2.0, seed=0)
    vocab = reg.get("tiny-tempo3").pipeline.semantic.cfg.vocab
    cfg = dataclasses.replace(presets_of(TempoConfig)["tiny"], vocab=vocab)
    save_tempo(tmp_path / "tempo", TempoModel(cfg, rngs=nnx.Rngs(0)), meta={"steps": 0})
    a, _, settings = reg.generate("tiny-tempo3", ["drums at 120 bpm"], 2.0, seed=0)
    assert a.shape == (1, 32_000) and settings["semantic_best_of"] == 3
    assert settings["tempo"] == str(tmp_path / "tempo")
    scores = reg.get("tiny-tempo3").pipeline.last_semantic_scores
    assert scores.shape == (1, 3) and np.all((scores >= 0) & (scores <= 1))

    # an ensemble scored by its least sure member; "min" on one model is unavailable
    from rewards.tempo import TempoEnsemble

    save_tempo(tmp_path / "ens", TempoEnsemble(cfg, 3, rngs=nnx.Rngs(1)), meta={"steps": 0})
    reg = SystemRegistry.from_dict({"systems": [
        {"name": "ens-min", "weights": str(bundle), "semantic_best_of": 3,
         "tempo": str(tmp_path / "ens"), "tempo_combine": "min"},
        {"name": "one-min", "weights": str(bundle), "semantic_best_of": 3,
         "tempo": str(tmp_path / "tempo"), "tempo_combine": "min"}]})
    _, _, settings = reg.generate("ens-min", ["drums at 120 bpm"], 2.0, seed=0)
    assert settings["tempo_combine"] == "min"
    with pytest.raises(SystemUnavailable, match="needs an ensemble"):
        reg.generate("one-min", ["drums at 120 bpm"], 2.0, seed=0)

    # by the mode reward alone, and by tempo × mode (the product of the probabilities)
    from rewards.mode import ModeConfig, ModeModel, save_mode

    mcfg = dataclasses.replace(presets_of(ModeConfig)["tiny"], vocab=vocab)
    save_mode(tmp_path / "mode", ModeModel(mcfg, rngs=nnx.Rngs(0)), meta={"steps": 0})
    reg = SystemRegistry.from_dict({"systems": [
        {"name": "mode3", "weights": str(bundle), "semantic_best_of": 3, "tempo": "none",
         "mode_reward": str(tmp_path / "mode")},
        {"name": "both3", "weights": str(bundle), "semantic_best_of": 3,
         "tempo": str(tmp_path / "tempo"), "mode_reward": str(tmp_path / "mode")},
        {"name": "lost", "weights": str(bundle), "semantic_best_of": 2,
         "mode_reward": str(tmp_path / "nothing")}]})
    _, _, settings = reg.generate("mode3", ["a melancholic waltz at 120 bpm"], 2.0, seed=0)
    assert settings["mode_reward"] == str(tmp_path / "mode") and settings["tempo"] == "none"
    mode_scores = reg.get("mode3").pipeline.last_semantic_scores
    assert mode_scores.shape == (1, 3) and np.all((mode_scores > 0) & (mode_scores < 1))
    reg.generate("both3", ["a melancholic waltz at 120 bpm"], 2.0, seed=0)
    both = reg.get("both3").pipeline.last_semantic_scores
    assert np.all(both <= mode_scores + 1e-6)    # the same candidates; × a probability
    with pytest.raises(SystemUnavailable, match="no mode model"):
        reg.generate("lost", ["a sad tune"], 2.0, seed=0)

    # stage-A selection by a mode model on codec tokens; each stage refuses the other's model
    acfg = dataclasses.replace(presets_of(ModeConfig)["tiny-acoustic"],
                               vocab=reg.get("mode3").pipeline.acoustic.cfg.vocab)
    save_mode(tmp_path / "mode-aco", ModeModel(acfg, rngs=nnx.Rngs(0)), meta={"steps": 0})
    reg = SystemRegistry.from_dict({"systems": [
        {"name": "aco3", "weights": str(bundle), "acoustic_best_of": 3,
         "acoustic_mode_reward": str(tmp_path / "mode-aco")},
        {"name": "swapped", "weights": str(bundle), "acoustic_best_of": 2,
         "acoustic_mode_reward": str(tmp_path / "mode")},
        {"name": "swapped-s", "weights": str(bundle), "semantic_best_of": 2, "tempo": "none",
         "mode_reward": str(tmp_path / "mode-aco")}]})
    _, _, settings = reg.generate("aco3", ["a melancholic waltz"], 2.0, seed=0)
    assert settings["acoustic_best_of"] == 3
    assert settings["acoustic_mode_reward"] == str(tmp_path / "mode-aco")
    assert reg.get("aco3").pipeline.last_acoustic_scores.shape == (1, 3)
    with pytest.raises(SystemUnavailable, match="reads semantic tokens"):
        reg.generate("swapped", ["a sad tune"], 2.0, seed=0)
    with pytest.raises(SystemUnavailable, match="reads codec tokens"):
        reg.generate("swapped-s", ["a sad tune"], 2.0, seed=0)

    # stage A by the tempo of each rendering's audio (the bundle's codec and semantic
    # tokenizer), alone and × the codec-token mode model
    reg = SystemRegistry.from_dict({"systems": [
        {"name": "aco-tempo", "weights": str(bundle), "acoustic_best_of": 3,
         "acoustic_tempo_reward": str(tmp_path / "ens"), "acoustic_tempo_combine": "min"},
        {"name": "aco-both", "weights": str(bundle), "acoustic_best_of": 3,
         "acoustic_tempo_reward": str(tmp_path / "ens"), "acoustic_tempo_combine": "min",
         "acoustic_mode_reward": str(tmp_path / "mode-aco")}]})
    _, _, settings = reg.generate("aco-tempo", ["a reel at 120 bpm"], 2.0, seed=0)
    assert settings["acoustic_tempo_reward"] == str(tmp_path / "ens")
    assert settings["acoustic_tempo_combine"] == "min" and "acoustic_mode_reward" not in settings
    tempo_scores = reg.get("aco-tempo").pipeline.last_acoustic_scores
    assert tempo_scores.shape == (1, 3) and np.all((tempo_scores >= 0) & (tempo_scores <= 1))
    reg.generate("aco-both", ["a melancholic reel at 120 bpm"], 2.0, seed=0)
    assert np.all(reg.get("aco-both").pipeline.last_acoustic_scores <= tempo_scores + 1e-6)
