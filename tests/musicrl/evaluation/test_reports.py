"""FAD report helpers, MuLan retrieval/zero-shot scoring, generation-eval chance levels."""

from __future__ import annotations

import numpy as np
import pytest

from musicrl.audio import write_wav_atomic
from musicrl.evaluation.fad_report import fad_between, fad_sets, load_set, pink_noise
from musicrl.evaluation.generation import permutation_chance
from musicrl.evaluation.mulan import _recall, zero_shot


def test_pink_noise_level_and_slope():
    x = pink_noise(4, 16_000, seed=1, rms_db=-20.0)
    np.testing.assert_allclose(np.sqrt(np.mean(x ** 2, axis=1)), 0.1, rtol=1e-3)
    spec = np.abs(np.fft.rfft(x, axis=1)) ** 2
    lo, hi = spec[:, 10:100].mean(), spec[:, 1000:2000].mean()
    assert lo / hi > 10  # 1/f: power falls with frequency


def test_fad_between_orders_near_and_far_sets():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((300, 8))
    same = rng.standard_normal((300, 8))
    far = rng.standard_normal((300, 8)) + 2.0
    near = fad_between(ref, same, n=200)
    away = fad_between(ref, far, n=200)
    assert 0 <= near["mean"] < away["mean"] and len(near["values"]) == 3
    assert away["mean"] > 8 * 4 * 0.5  # |Δμ|² = 8·(2/σ)² after standardization ≈ 32


def test_load_set_from_folder_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "clips"
    for i in range(3):
        write_wav_atomic(folder / f"{i}.wav", 0.1 * rng.standard_normal(16_000).astype(np.float32),
                         16_000)
    emb, name = load_set(str(folder), tmp_path, tmp_path / "cache")
    assert emb.shape[0] == 3 and "3 files" in name
    with pytest.raises(ValueError, match="neither a split"):
        load_set(str(tmp_path / "missing"), tmp_path, tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        load_set(str(tmp_path / "empty"), tmp_path, tmp_path / "cache")
    rep = fad_sets(str(folder), [str(folder)], tmp_path, tmp_path / "cache", n=3, seeds=1)
    assert rep["rows"][0]["mean"] == pytest.approx(0.0, abs=1e-6)


def test_recall_matches_brute_force():
    rng = np.random.default_rng(0)
    sims = rng.standard_normal((30, 30))
    sims[np.arange(30), np.arange(30)] += 1.5
    piece = np.repeat(np.arange(10), 3)
    same = piece[:, None] == piece[None, :]
    r = _recall(sims, same)
    for k in (1, 10):
        brute = np.mean([i in np.argsort(-sims[i])[:k] for i in range(30)])
        assert r[f"t2a_r@{k}"] == pytest.approx(brute)
        brute_piece = np.mean([same[i, np.argsort(-sims[i])[:k]].any() for i in range(30)])
        assert r[f"t2a_piece_r@{k}"] == pytest.approx(brute_piece)
    assert r["chance_r@10"] == pytest.approx(10 / 30)
    # chance of hitting one of the 3 same-piece clips among 10 random of 30
    assert r["chance_piece_r@10"] == pytest.approx(1 - (20 * 19 * 18) / (30 * 29 * 28))


def test_zero_shot_picks_nearest_label_prompt():
    labels = {"a": ("alpha",), "b": ("beta",)}
    vec = {"alpha": np.array([1.0, 0.0]), "beta": np.array([0.0, 1.0])}
    embed = lambda ps: np.stack([vec[p] for p in ps])  # noqa: E731
    audio = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    out = zero_shot(audio, ["a", "b", "b", "b"], embed, labels)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["chance"] == 0.5 and out["majority"] == 0.75 and out["n"] == 4


def test_permutation_chance_reflects_label_imbalance():
    truth = ["x"] * 90 + ["y"] * 10
    always_x = ["x"] * 100
    assert permutation_chance(always_x, truth, lambda a, b: a == b) == pytest.approx(0.9)
    perfect = list(truth)
    ch = permutation_chance(perfect, truth, lambda a, b: a == b)
    assert 0.75 < ch < 0.9  # 0.9² + 0.1² = 0.82 in expectation


def test_generation_report_names_best_of_systems_and_flags_their_mcc(tmp_path):
    from musicrl.evaluation.generation import format_table, write_report

    att = {a: {"accuracy": 0.4, "chance": 0.2, "ratio": 2.0, "n": 10}
           for a in ("mode", "melody_family")}
    fad = {"mean": 90.0, "std": 2.0}

    def system(g, best_of):
        return {"guidance": g, "best_of": best_of, "mcc": 0.5, "mcc_other_prompts": 0.0,
                "mcc_ratio_to_real": 0.7, "fad": fad, "adherence": att}

    rep = {"prompts": 10, "split": "test", "seconds": 10.0,
           "real": {"mcc": 0.7, "adherence": att},
           "systems": {"cfg3": system(3.0, 1), "cfg3-bo4": system(3.0, 4)},
           "baselines": {"shuffled_tokens": {"mcc": 0.5, "fad": fad}}}
    md = format_table(rep)
    assert "| generated, CFG γ=3 |" in md and "γ=3, best of 4 †" in md
    assert "flattered" in md
    (tmp_path / "report.partial.json").write_text("{}")      # what a run wrote as it went
    write_report(rep, tmp_path)
    assert (tmp_path / "generation.png").stat().st_size > 1000
    assert not (tmp_path / "report.partial.json").exists()  # the whole report replaces it


def test_shuffled_token_baseline_needs_no_token_cache(tmp_path):
    """Without ``musicrl tokenize``'s cache the baselines encode the clips with the bundle's
    codec (and say so), rather than failing after the generation has run."""
    import soundfile as sf

    from musicrl.data.manifest import Clip
    from musicrl.evaluation.generation import _shuffled_and_resynth
    from musicrl.pipeline import Pipeline
    from musicrl.testing import tiny_bundle

    pipe = Pipeline.from_pretrained(tiny_bundle(tmp_path / "bundle"))
    t = np.arange(32_000) / 16_000
    clips = []
    for i, f in enumerate((220.0, 330.0)):
        sf.write(tmp_path / f"{i}.wav", 0.3 * np.sin(2 * np.pi * f * t), 16_000)
        clips.append(Clip(id=f"c{i}", path=f"{i}.wav", duration=2.0, captions=("x",), tags=(),
                          labels={}, split="test", piece=f"p{i}", source="test", checksum=""))
    real, shuf, source = _shuffled_and_resynth(pipe, clips, tmp_path, str(tmp_path / "tokens"),
                                               n=16_000, seed=0)
    assert real.shape == shuf.shape == (2, 16_000) and "no token cache" in source
    assert np.all(np.isfinite(real)) and not np.allclose(real, shuf)


def test_adherence_reports_what_a_perfect_system_would_reach():
    """perfect_ratio = 1 / Σ p_c²: 2 for a balanced yes/no attribute, 4 for four balanced
    classes — and the real clips' row of the table shows it beside their own ratio."""
    from types import SimpleNamespace

    from musicrl.evaluation.generation import _adherence, format_table

    n = 400
    fam = ["piano", "strings", "brass", "reed"]
    labels = [{"mode": ("minor", "major")[i % 2], "bpm": 80.0 + 40 * (i % 2),
               "melody_family": fam[i % 4], "drums": i % 2 == 0} for i in range(n)]
    clips = [SimpleNamespace(labels=lb) for lb in labels]
    truth = {"mode": np.array([lb["mode"] for lb in labels]),
             "tempo": np.array([lb["bpm"] for lb in labels]),
             "melody": np.array([lb["melody_family"] for lb in labels]),
             "drums": np.array([lb["drums"] for lb in labels])}
    out = _adherence(truth, clips, ["a waltz"] * n)
    assert out["drums"]["perfect_ratio"] == pytest.approx(2.0, rel=0.05)
    assert out["mode"]["perfect_ratio"] == pytest.approx(2.0, rel=0.05)
    assert out["melody_family"]["perfect_ratio"] == pytest.approx(4.0, rel=0.05)
    # predictions equal to the labels reach the perfect ratio exactly
    assert out["drums"]["ratio"] == pytest.approx(out["drums"]["perfect_ratio"])
    rnd = np.random.default_rng(0)
    guess = dict(truth, drums=rnd.random(n) < 0.5)
    assert _adherence(guess, clips, ["a waltz"] * n)["drums"]["ratio"] < 1.2
    fad = {"mean": 90.0, "std": 2.0}
    rep = {"prompts": n, "split": "test", "seconds": 10.0, "real": {"mcc": 0.7, "adherence": out},
           "systems": {"cfg3": {"guidance": 3.0, "mcc": 0.5, "mcc_other_prompts": 0.0,
                                "mcc_ratio_to_real": 0.7, "fad": fad, "adherence": out}}}
    md = format_table(rep)
    assert "a perfect system's ratio" in md
    row = next(line for line in md.splitlines() if line.startswith("| drums |"))
    assert row.rstrip(" |").endswith(f"{out['drums']['perfect_ratio']:.2f}×")


def test_adherence_counts_mode_on_the_prompts_that_name_one():
    """``mode`` scores every labelled clip; ``mode_named_in_prompt`` only the prompts whose
    words name a mode, against the mode they name."""
    from types import SimpleNamespace

    from musicrl.evaluation.generation import _adherence

    labels = [{"mode": m, "bpm": 100.0, "melody_family": "piano", "drums": False}
              for m in ("minor", "minor", "major", "major")]
    clips = [SimpleNamespace(labels=lb) for lb in labels]
    prompts = ["a melancholic waltz", "a waltz", "a bright march", "a march in D major"]
    att = {"mode": np.array(["minor", "major", "minor", "major"]),
           "tempo": np.full(4, 100.0), "melody": np.array(["piano"] * 4),
           "drums": np.zeros(4, bool)}
    out = _adherence(att, clips, prompts)
    assert out["mode"]["accuracy"] == 0.5 and out["mode"]["n"] == 4
    named = out["mode_named_in_prompt"]
    assert named["n"] == 3 and named["accuracy"] == pytest.approx(2 / 3)


def test_system_label_names_each_stage_selection():
    from musicrl.evaluation.generation import system_label

    assert system_label({"guidance": 3.0}) == "γ=3"
    assert system_label({"guidance": 3.0, "semantic_best_of": 8, "semantic_score": "tempo",
                         "acoustic_best_of": 4, "acoustic_score": "mode on codec tokens"}) == \
        "γ=3, stage S best of 8 by tempo, stage A best of 4 by mode on codec tokens"


def test_eval_prompts_subset_asks_as_the_full_run_does(tiny_corpus):
    """Every k-th prompt (``max_prompts``) is the same text the full run gives that clip, so
    a recipe on a subset and ``musicrl eval generate`` on the whole split compare."""
    from musicrl.evaluation.generation import eval_prompts

    cfg, _ = tiny_corpus
    clips, prompts = eval_prompts(cfg.root, "train")
    assert len(clips) >= 4 and all(p in c.captions for c, p in zip(clips, prompts, strict=True))
    assert len({p for c, p in zip(clips, prompts, strict=True) if c.captions.index(p)}) > 0   # rotated
    sub_clips, sub_prompts = eval_prompts(cfg.root, "train", max_prompts=len(clips) // 2)
    full = {c.id: p for c, p in zip(clips, prompts, strict=True)}
    assert len(sub_clips) == len(clips) // 2 and sub_clips[1].id == clips[2].id
    assert sub_prompts == [full[c.id] for c in sub_clips]
