"""Tempo and mode variants re-render the build's exact arrangements at other tempi or in the
parallel mode, train split only."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from musicrl.cli import main
from musicrl.data.build import plan_units
from musicrl.data.events import load_events, make_events
from musicrl.data.manifest import load_clips
from musicrl.data.scores import STYLES, parse_piece
from musicrl.data.variants import (
    TempoVariantsError,
    mode_variants,
    parallel_mode_events,
    render_clip_at,
    source_config,
    tempo_variants,
    variant_bpms,
    variant_groups,
)


@pytest.fixture(scope="module")
def variants(tiny_corpus, tmp_path_factory):
    cfg, _ = tiny_corpus
    root = tmp_path_factory.mktemp("variants")
    report = tempo_variants(cfg.root, root, variants=2, workers=2, progress=False)
    return cfg, root, report


def test_render_at_the_built_tempo_reproduces_the_built_clip(tiny_corpus):
    cfg, _ = tiny_corpus
    clip = load_clips(cfg.root)[0]
    ref = next(u for u in plan_units(cfg) if u.id == clip.piece)
    piece = parse_piece(ref, cfg.max_piece_quarters)
    j = int(clip.id.rsplit("-", 1)[1])
    audio, _, labels, _ = render_clip_at(piece, ref, source_config(cfg.root), j)
    built, _ = sf.read(f"{cfg.root}/{clip.path}")
    assert labels["bpm"] == clip.labels["bpm"]
    assert np.abs(np.clip(audio, -1, 1) - built).max() <= 1.0 / 32767  # PCM-16 rounding only
    faster, _, lab2, _ = render_clip_at(piece, ref, source_config(cfg.root), j, bpm=2 * labels["bpm"])
    assert lab2["bpm"] == 2 * labels["bpm"] and not np.allclose(faster, audio[:len(faster)])


def test_variants_differ_in_tempo_only_and_stay_in_train(variants):
    cfg, root, report = variants
    src = {c.id: c for c in load_clips(cfg.root)}
    out = load_clips(root)
    assert report.clips == len(out) > 0
    train_pieces = {c.piece for c in src.values() if c.split == "train"}
    for c in out:
        orig = src[c.labels["tempo_variant_of"]]
        assert c.id.startswith(orig.id + "-v") and c.split == "train" and c.piece in train_pieces
        a, b = c.labels["bpm"], orig.labels["bpm"]
        assert abs(math.log(a / b)) >= math.log1p(0.1) - 1e-9
        lo, hi = STYLES[orig.labels["style"]].bpm_range
        assert max(lo, cfg.bpm_min) <= a <= min(hi, cfg.bpm_max)
        same = {k for k in orig.labels if k not in ("bpm", "tempo_bucket", "n_notes")}
        assert {k: c.labels[k] for k in same} == {k: orig.labels[k] for k in same}
        assert any(str(a) in cap for cap in c.captions)      # captioned from the new labels
        assert not any(f"{b} bpm" in cap for cap in c.captions)
    # two variants of one clip are ≥ 10 % apart from each other too
    by_src: dict = {}
    for c in out:
        by_src.setdefault(c.labels["tempo_variant_of"], []).append(c.labels["bpm"])
    for bpms in by_src.values():
        if len(bpms) == 2:
            assert abs(math.log(bpms[0] / bpms[1])) >= math.log1p(0.1) - 1e-9


def test_rerun_resumes_and_options_are_checked(variants, tiny_corpus, tmp_path):
    cfg, root, report = variants
    again = tempo_variants(cfg.root, root, variants=2, workers=1, progress=False)
    assert again.reused == report.pieces and again.clips == report.clips
    with pytest.raises(TempoVariantsError, match="other options"):
        tempo_variants(cfg.root, root, variants=3, progress=False)
    with pytest.raises(TempoVariantsError, match="must differ"):
        tempo_variants(cfg.root, cfg.root, progress=False)
    with pytest.raises(TempoVariantsError, match="build.json"):
        tempo_variants(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(TempoVariantsError, match="variants"):
        tempo_variants(cfg.root, tmp_path / "v", variants=0, progress=False)
    assert main(["data", "tempo-variants", "--source", str(tmp_path), "--root",
                 str(tmp_path / "o"), "--quiet"]) != 0
    info = json.loads((root / "variants.json").read_text())
    assert info["variants"] == 2 and info["source"] == str(cfg.root)


def test_variant_bpms():
    rng = np.random.default_rng(0)
    for bpm in (60, 100, 140, 180):
        got = variant_bpms(bpm, 60, 180, 3, 0.1, rng)
        assert len(got) == 3 and all(60 <= b <= 180 for b in got)
        assert all(abs(math.log(b / bpm)) >= math.log1p(0.1) for b in got)
    assert variant_bpms(100, 95, 105, 2, 0.1, rng) == []      # no room: none, not a bad one


def test_held_out_twins_are_one_clip_at_two_tempi(tiny_corpus):
    """held_out_twins (for evaluation, nothing written): each valid clip as built, and its
    arrangement at a tempo ≥ 10 % away, with captions written from the new labels."""
    from musicrl.data.variants import held_out_twins

    cfg, _ = tiny_corpus
    valid = {c.id: c for c in load_clips(cfg.root, splits=["valid"])}
    twins = held_out_twins(cfg.root, "valid", max_clips=3, drums_only=False, progress=False)
    assert twins and len(twins) <= 3
    for t in twins:
        old, new = t["bpm"]
        assert old == valid[t["id"]].labels["bpm"] and abs(new / old - 1) >= 0.1 - 1e-9
        built, _ = sf.read(f"{cfg.root}/{valid[t['id']].path}", dtype="float32")
        np.testing.assert_allclose(t["wav"][0], built, atol=1e-4)
        assert t["wav"][1].shape[0] > 0 and not np.allclose(
            t["wav"][1][:len(built)], t["wav"][0][:len(t["wav"][1])], atol=1e-3)
        assert t["captions"][0] == list(valid[t["id"]].captions)
        assert len(t["captions"][1]) == len(t["captions"][0])
        assert any(str(new) in c for c in t["captions"][1])


def test_parallel_mode_moves_the_third_sixth_and_seventh():
    """Major → natural minor lowers degrees 3, 6, 7 a semitone; minor → major raises them;
    other degrees, notes off the scale and drums stay; a diatonic line goes there and back."""
    d_major = [62, 64, 66, 67, 69, 71, 73, 74]                 # D major scale, D4..D5
    rows = [(p, i * 0.5, i * 0.5 + 0.4, 80, 0, False, 0) for i, p in enumerate(d_major)]
    rows += [(66, 0.0, 0.1, 90, 0, True, 3), (63, 4.0, 4.4, 80, 0, False, 0)]   # drum, D#
    ev = make_events(rows)
    minor = parallel_mode_events(ev, 2, "major")
    moved = {int(a): int(b) for a, b in zip(ev["pitch"], minor["pitch"], strict=True) if a != b}
    assert moved == {66: 65, 71: 70, 73: 72}                   # F#→F, B→Bb, C#→C
    drum = minor[minor["is_drum"]]
    assert drum["pitch"].tolist() == [66]                      # a GM key, not a pitch
    assert 63 in minor["pitch"].tolist()                       # off the scale: stays
    for f in ("onset", "offset", "velocity", "program", "role"):
        np.testing.assert_array_equal(minor[f], ev[f])
    back = parallel_mode_events(minor, 2, "minor")
    diatonic = ~ev["is_drum"] & (ev["pitch"] != 63)
    np.testing.assert_array_equal(back["pitch"][diatonic], ev["pitch"][diatonic])
    with pytest.raises(TempoVariantsError, match="mode"):
        parallel_mode_events(ev, 2, "dorian")


@pytest.fixture(scope="module")
def modes(tiny_corpus, tmp_path_factory):
    cfg, _ = tiny_corpus
    root = tmp_path_factory.mktemp("modes")
    return cfg, root, mode_variants(cfg.root, root, workers=1, progress=False)


def test_mode_variants_differ_in_mode_only(modes):
    """One parallel-mode variant per train clip: the same notes at the same times, the
    3rd/6th/7th degrees a semitone away, the mode label and the tags flipped."""
    cfg, root, report = modes
    src = {c.id: c for c in load_clips(cfg.root)}
    out = load_clips(root)
    assert report.clips == len(out) > 0
    assert set(variant_groups(root)) == {c.labels["mode_variant_of"] for c in out}
    n_moved = 0
    for c in out:
        orig = src[c.labels["mode_variant_of"]]
        assert c.id == orig.id + "-m0" and c.split == "train" and orig.split == "train"
        assert {c.labels["mode"], orig.labels["mode"]} == {"major", "minor"}
        same = {k for k in orig.labels if k != "mode"}
        assert {k: c.labels[k] for k in same} == {k: orig.labels[k] for k in same}
        assert c.labels["mode"] in c.tags and orig.labels["mode"] not in c.tags
        a, b = load_events(f"{cfg.root}/{orig.notes_path}"), load_events(f"{root}/{c.notes_path}")
        np.testing.assert_array_equal(a["onset"], b["onset"])
        step = b["pitch"].astype(int) - a["pitch"].astype(int)
        assert set(step.tolist()) <= ({0, -1} if orig.labels["mode"] == "major" else {0, 1})
        assert not step[a["is_drum"]].any()
        n_moved += int(step.any())
    assert n_moved == len(out)                                 # every clip changed
    again = mode_variants(cfg.root, root, workers=1, progress=False)
    assert again.reused == report.pieces and again.clips == report.clips
    with pytest.raises(TempoVariantsError, match="other options"):   # not a tempo root
        tempo_variants(cfg.root, root, variants=1, workers=1, progress=False)
    assert main(["data", "mode-variants", "--source", str(cfg.root), "--root", str(root),
                 "--quiet"]) == 0


def test_held_out_mode_twins(tiny_corpus):
    from musicrl.data.variants import held_out_twins

    cfg, _ = tiny_corpus
    twins = held_out_twins(cfg.root, "valid", max_clips=2, progress=False, kind="mode")
    assert twins
    for t in twins:
        assert t["mode"][0] != t["mode"][1] and t["bpm"][0] == t["bpm"][1]
        assert not np.allclose(t["wav"][0], t["wav"][1][:len(t["wav"][0])], atol=1e-3)
