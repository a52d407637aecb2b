"""The bundled corpus: determinism, resume, layout, and labels true to the audio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from musicrl.config import resolve
from musicrl.data.build import build_corpus, plan_units
from musicrl.data.checks import check_chroma, check_tempo
from musicrl.data.config import DataConfig
from musicrl.data.events import load_events
from musicrl.data.manifest import load_clips, sha256_file


def test_tiny_corpus_layout(tiny_corpus):
    cfg, report = tiny_corpus
    clips = load_clips(cfg.root)
    assert len(clips) == report.clips >= 12
    assert {c.split for c in clips} == {"train", "valid", "test"}
    by_piece = {}
    for c in clips:
        by_piece.setdefault(c.piece, set()).add(c.split)
        x, sr = sf.read(Path(cfg.root) / c.path)
        assert sr == 16_000 and x.ndim == 1 and len(x) == int(cfg.clip_seconds * sr)
        assert sha256_file(Path(cfg.root) / c.path) == c.checksum
        assert len(c.captions) == cfg.captions_per_clip and len(set(c.captions)) == len(c.captions)
        assert c.labels["style"] in cfg.styles and 60 <= c.labels["bpm"] <= 180
        ev = load_events(Path(cfg.root) / c.notes_path)
        assert ev.size > 0 and float(ev["offset"].max()) <= cfg.clip_seconds + 1e-4
        assert bool(ev["is_drum"].any()) == c.labels["drums"]
    # Split by piece: no piece straddles two splits.
    assert all(len(s) == 1 for s in by_piece.values())


def test_same_seed_same_checksums_regardless_of_workers(tiny_corpus, tmp_path):
    cfg, report = tiny_corpus
    again = build_corpus(resolve(DataConfig, "tiny", [f"root={tmp_path}", "workers=1"]),
                         progress=False)
    assert again.manifest_sha256 == report.manifest_sha256
    other = resolve(DataConfig, "tiny", [f"root={tmp_path / 'b'}", "seed=1", "workers=1"])
    assert build_corpus(other, progress=False).manifest_sha256 != report.manifest_sha256


def test_resume_does_not_redo_finished_pieces(tiny_corpus, tmp_path):
    _, full = tiny_corpus
    cfg = resolve(DataConfig, "tiny", [f"root={tmp_path}", "workers=1"])
    part = build_corpus(cfg, progress=False, limit_units=4)
    assert not part.complete and part.rendered == 4
    assert not (tmp_path / "manifest.jsonl").exists()
    records = sorted((tmp_path / "units").glob("*.json"))
    wavs = sorted((tmp_path / "audio").rglob("*.wav"))
    mtimes = {p: p.stat().st_mtime_ns for p in records + wavs}
    rest = build_corpus(cfg, progress=False)
    assert rest.complete and rest.reused == 4 and rest.rendered == len(plan_units(cfg)) - 4
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert rest.manifest_sha256 == full.manifest_sha256


def test_damaged_clip_is_rendered_again(tiny_corpus, tmp_path):
    _, full = tiny_corpus
    cfg = resolve(DataConfig, "tiny", [f"root={tmp_path}", "workers=1"])
    build_corpus(cfg, progress=False)
    victim = sorted((tmp_path / "audio").rglob("*.wav"))[0]
    victim.write_bytes(victim.read_bytes()[:100])  # a truncated file
    again = build_corpus(cfg, progress=False)
    assert again.rendered == 1 and again.manifest_sha256 == full.manifest_sha256


@pytest.mark.slow
def test_killed_build_finishes_on_restart(tiny_corpus, tmp_path):
    _, full = tiny_corpus
    cmd = [sys.executable, "-m", "musicrl.cli", "data", "build", "--preset", "tiny", "--quiet",
           "--root", str(tmp_path), "workers=1"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "units").glob("*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((tmp_path / "units").glob("*.json")))
    assert 3 <= done < len(plan_units(resolve(DataConfig, "tiny")))
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    info = json.loads((tmp_path / "build.json").read_text())
    assert info["manifest_sha256"] == full.manifest_sha256


# ----------------------------------------------------------------------------
# Labels are true to the audio
# ----------------------------------------------------------------------------

@pytest.mark.slow
def test_tempo_label_matches_beat_tracking(label_corpus):
    cfg, _ = label_corpus
    result = check_tempo(cfg.root, load_clips(cfg.root))
    assert result.n >= 15
    # The bar: ≥ 80 % within 4 %; octave errors are counted apart (not as hits).
    assert result.within_4pct >= 0.8, result


@pytest.mark.slow
def test_chroma_of_audio_agrees_with_note_events(label_corpus):
    cfg, _ = label_corpus
    result = check_chroma(cfg.root, load_clips(cfg.root))
    assert result.matched >= 0.6, result
    assert result.matched >= result.mismatched + 0.2, result
    assert result.frac_matched_better >= 0.9, result


def test_tempo_check_can_fail(label_corpus):
    """Wrong labels must be caught: shift every bpm by 10 %."""
    import dataclasses

    cfg, _ = label_corpus
    clips = [c for c in load_clips(cfg.root) if c.labels["drums"]][:8]
    wrong = [dataclasses.replace(c, labels={**c.labels, "bpm": c.labels["bpm"] * 1.1})
             for c in clips]
    assert check_tempo(cfg.root, wrong).within_4pct <= 0.25
