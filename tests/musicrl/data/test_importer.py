"""``musicrl data import``: validation, idempotence, and that nothing is lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicrl.cli import main
from musicrl.data.caption_file import parse_tags, unsafe_path
from musicrl.data.importer import ImportFolderError, import_folder
from musicrl.data.manifest import IMPORTED_MANIFEST, load_clips, sha256_file

# ----------------------------------------------------------------------------
# Fixtures: a folder mixing good and bad files
# ----------------------------------------------------------------------------


def _tone(sr: int, seconds: float, f0: float = 220.0, channels: int = 1,
          seed: int = 0) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    x = sum(0.2 / k * np.sin(2 * np.pi * f0 * k * t) for k in (1, 2, 3))
    x = x + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    x = x.astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def _write(path: Path, x: np.ndarray, sr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr)
    return path


def _jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = ["stereo44k.wav", "mono16k.wav", "long.flac"]


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, Path]:
    """Three good files and every kind of bad entry; the caption file sits inside."""
    d = tmp_path / "mine"
    _write(d / "stereo44k.wav", _tone(44_100, 3.0, 220, channels=2), 44_100)
    _write(d / "mono16k.wav", _tone(16_000, 2.5, 330, seed=1), 16_000)
    _write(d / "long.flac", _tone(22_050, 11.0, 440, seed=2), 22_050)  # 5 + 5 + (1 dropped)
    good = (d / "mono16k.wav").read_bytes()
    (d / "corrupt.wav").write_bytes(good[:12] + np.random.default_rng(0).bytes(3000))
    (d / "empty.wav").write_bytes(b"")
    _write(d / "silent.wav", np.zeros(16_000 * 3, np.float32), 16_000)
    (d / "x.wav").write_text("this is not audio\n" * 50)
    _write(d / "short.wav", _tone(16_000, 1.0), 16_000)
    _write(d / "uncaptioned.wav", _tone(16_000, 3.0, seed=3), 16_000)
    _write(d / "blank.wav", _tone(16_000, 3.0, seed=4), 16_000)
    (d / "notes.txt").write_text("my notes")
    _write(d / ".hidden.wav", _tone(16_000, 3.0), 16_000)      # ignored
    _write(tmp_path / "outside.wav", _tone(16_000, 3.0), 16_000)  # reachable only via '..'
    caps = _jsonl(d / "captions.jsonl", [
        {"file": "stereo44k.wav", "caption": "A warm low drone.", "aspect_list": ["drone", "warm"]},
        {"path": "mono16k", "text": "A bright tone with hiss.", "split": "test"},
        {"filename": "long.flac", "caption": "A long steady tone.", "tags": "steady, tone"},
        {"file": "long.flac", "caption": "One note held for a long time."},
        {"file": "corrupt.wav", "caption": "corrupt"},
        {"file": "empty.wav", "caption": "empty"},
        {"file": "silent.wav", "caption": "silence"},
        {"file": "x.wav", "caption": "text file"},
        {"file": "short.wav", "caption": "too short"},
        {"file": "blank.wav", "caption": "   "},
        {"file": "missing.wav", "caption": "not there"},
        {"file": "../outside.wav", "caption": "escape"},
        {"file": "/etc/passwd", "caption": "escape"},
        {"file": "./notes.txt", "caption": "my notes"},
        "{not json",
    ])
    return d, caps


def _reasons(report) -> dict[str, str]:
    return dict(report.skipped)


def _rows(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / IMPORTED_MANIFEST).read_text().splitlines()]


# ----------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------


def test_mixed_folder_imports_good_and_names_each_bad_one(mixed, tmp_path):
    folder, caps = mixed
    root = tmp_path / "root"
    report = import_folder(folder, caps, root=root, clip_seconds=5.0, min_seconds=2.0)

    assert sorted(report.imported) == sorted(GOOD)
    reasons = _reasons(report)
    expect = {
        "corrupt.wav": "cannot decode",
        "empty.wav": "empty file",
        "silent.wav": "silent",
        "x.wav": "cannot decode",
        "short.wav": "too short (1.0 s < 2 s)",
        "blank.wav": "empty caption",
        "uncaptioned.wav": "no caption",
        "notes.txt": "unsupported format",
        "missing.wav": "file not found",
        "../outside.wav": "path escapes the folder (absolute or '..'",
        "/etc/passwd": "path escapes the folder (absolute or '..'",
        "captions.jsonl:15": "not valid JSON",
    }
    for name, why in expect.items():
        assert why in reasons.get(name, ""), (name, reasons.get(name))
    assert set(reasons) == set(expect)  # nothing else, no hidden file, not the caption file
    assert len(report.skipped) == len(expect)  # each named once
    summary = report.summary()
    for name in expect:
        assert name in summary

    rows = _rows(root)
    by_source = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    assert sorted(by_source) == sorted(f"import:{g}" for g in GOOD)
    assert [r["duration"] for r in by_source["import:long.flac"]] == [5.0, 5.0]  # 1 s tail dropped
    assert len(by_source["import:stereo44k.wav"]) == 1
    for r in rows:
        path = root / r["path"]
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (16_000, 1)
        assert r["checksum"] == sha256_file(path)
        assert abs(info.frames / 16_000 - r["duration"]) < 1e-3
        assert r["origin"] == "import" and r["notes_path"] == ""
        assert r["piece"] == r["id"].rsplit("-", 1)[0]
        assert r["path"] == f"imported/audio/{r['id']}.wav"
    long_rows = by_source["import:long.flac"]
    assert len({r["piece"] for r in long_rows}) == 1
    assert long_rows[0]["captions"] == ["A long steady tone.", "One note held for a long time."]
    assert long_rows[0]["tags"] == ["steady", "tone"]
    assert [r["labels"]["offset_s"] for r in long_rows] == [0.0, 5.0]
    assert by_source["import:stereo44k.wav"][0]["tags"] == ["drone", "warm"]
    assert by_source["import:mono16k.wav"][0]["split"] == "test"
    assert by_source["import:stereo44k.wav"][0]["split"] == "train"
    assert len(load_clips(root)) == len(rows)  # readable as Clips

    # Loudness normalized to about -20 LUFS.
    import pyloudnorm

    x, sr = sf.read(root / long_rows[0]["path"])
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(x) - (-20.0)) < 1.0


def test_second_run_changes_nothing(mixed, tmp_path):
    folder, caps = mixed
    root = tmp_path / "root"
    first = import_folder(folder, caps, root=root, clip_seconds=5.0)
    manifest = root / IMPORTED_MANIFEST
    before = manifest.read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in (root / "imported/audio").iterdir()}

    second = import_folder(folder, caps, root=root, clip_seconds=5.0)
    assert second.imported == [] and second.clips == []
    assert sorted(second.unchanged) == sorted(GOOD)
    assert second.skipped == first.skipped  # bad entries are still reported
    assert manifest.read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in (root / "imported/audio").iterdir()} == stamps


def test_later_import_keeps_earlier_rows_and_names_do_not_collide(mixed, tmp_path):
    folder, caps = mixed
    root = tmp_path / "root"
    import_folder(folder, caps, root=root, clip_seconds=5.0)
    before = (root / IMPORTED_MANIFEST).read_text()

    other = tmp_path / "other"
    _write(other / "stereo44k.wav", _tone(16_000, 3.0, 550, seed=9), 16_000)  # same name
    shutil.copy(folder / "mono16k.wav", other / "renamed.wav")                 # same audio
    caps2 = _jsonl(tmp_path / "caps2.jsonl", [
        {"file": "stereo44k.wav", "caption": "A different file with the same name."},
        {"file": "renamed.wav", "caption": "A copy."},
    ])
    report = import_folder(other, caps2, root=root, clip_seconds=5.0)
    assert report.imported == ["stereo44k.wav"]
    assert report.unchanged == ["renamed.wav"]  # already imported as mono16k.wav
    after = (root / IMPORTED_MANIFEST).read_text()
    assert after.startswith(before)
    ids = [r["id"] for r in _rows(root)]
    assert len(ids) == len(set(ids))
    same_name = [r for r in _rows(root) if r["source"] == "import:stereo44k.wav"]
    assert len({r["piece"] for r in same_name}) == 2


def test_musiccaps_csv_with_segments(tmp_path):
    d = tmp_path / "mc"
    _write(d / "abc123.wav", _tone(48_000, 12.0, 196, channels=2), 48_000)
    _write(d / "def456.flac", _tone(16_000, 4.0, 262, seed=5), 16_000)  # already the segment
    _write(d / "ghi789.wav", _tone(16_000, 5.0, 262, seed=6), 16_000)
    caps = tmp_path / "musiccaps.csv"
    caps.write_text(
        "ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id\n"
        "abc123,2,8,/m/0,\"['piano', 'slow tempo', 'mellow']\",\"A mellow piano, slow.\",1\n"
        "def456,30,34,/m/0,\"['guitar']\",A plucked guitar.,2\n"
        "ghi789,30,40,/m/0,\"['x']\",Segment beyond the file.,3\n"
        "nope00,0,10,/m/0,\"['x']\",Missing file.,4\n"
        "broken,row\n")
    report = import_folder(d, caps, root=tmp_path / "root", clip_seconds=10.0)

    assert sorted(report.imported) == ["abc123.wav [2-8 s]", "def456.flac [30-34 s]"]
    reasons = _reasons(report)
    assert "outside the file" in reasons["ghi789.wav [30-40 s]"]
    assert "file not found" in reasons["nope00"]
    assert "2 fields" in reasons["musiccaps.csv:6"]
    assert len(reasons) == 3
    rows = {r["source"]: r for r in _rows(tmp_path / "root")}
    a = rows["import:abc123.wav"]
    assert a["tags"] == ["piano", "slow tempo", "mellow"]
    assert a["captions"] == ["A mellow piano, slow."]
    assert a["duration"] == 6.0 and a["labels"]["offset_s"] == 2.0
    assert rows["import:def456.flac"]["duration"] == 4.0


def test_cli_exit_status(mixed, tmp_path, capsys):
    folder, caps = mixed
    root = tmp_path / "root"
    argv = ["data", "import", str(folder), "--captions", str(caps), "--root", str(root),
            "--clip-seconds", "5", "--quiet"]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "corrupt.wav" in out and "no caption" in out
    assert main(argv) == 3  # still skipped on the re-run, and nothing changes

    good = tmp_path / "good"
    _write(good / "a.wav", _tone(16_000, 3.0), 16_000)
    caps2 = _jsonl(tmp_path / "good.jsonl", [{"file": "a.wav", "caption": "A tone."}])
    assert main(["data", "import", str(good), "--captions", str(caps2),
                 "--root", str(root), "--quiet"]) == 0
    assert any(r["source"] == "import:a.wav" for r in _rows(root))


def test_missing_audio_is_reimported_without_duplicates(tmp_path):
    d = tmp_path / "d"
    _write(d / "a.wav", _tone(16_000, 3.0), 16_000)
    caps = _jsonl(tmp_path / "c.jsonl", [{"file": "a.wav", "caption": "A tone."}])
    root = tmp_path / "root"
    import_folder(d, caps, root=root)
    (wav,) = (root / "imported/audio").iterdir()
    wav.unlink()
    report = import_folder(d, caps, root=root)
    assert report.imported == ["a.wav"] and wav.exists()
    assert len(_rows(root)) == 1


def test_refuses_unusable_inputs_without_touching_the_manifest(tmp_path):
    d = tmp_path / "d"
    _write(d / "a.wav", _tone(16_000, 3.0), 16_000)
    root = tmp_path / "root"
    bad = tmp_path / "caps.txt"
    bad.write_text("a.wav\tA tone.\n")
    with pytest.raises(ImportFolderError, match="JSONL"):
        import_folder(d, bad, root=root)
    no_col = tmp_path / "caps.csv"
    no_col.write_text("name,caption\na.wav,A tone.\n")
    with pytest.raises(ImportFolderError, match="file-name column"):
        import_folder(d, no_col, root=root)

    root.mkdir()
    (root / IMPORTED_MANIFEST).write_text('{"id": "kept"}\n{oops\n')
    caps = _jsonl(tmp_path / "c.jsonl", [{"file": "a.wav", "caption": "A tone."}])
    with pytest.raises(ImportFolderError, match=":2: damaged"):
        import_folder(d, caps, root=root)
    assert (root / IMPORTED_MANIFEST).read_text() == '{"id": "kept"}\n{oops\n'


def test_json_array_duplicates_conflicts_and_links(tmp_path):
    d = tmp_path / "d"
    _write(d / "a.wav", _tone(16_000, 3.0), 16_000)
    shutil.copy(d / "a.wav", d / "copy.wav")
    _write(d / "b.ogg", _tone(16_000, 3.0, 300, seed=7), 16_000)
    _write(tmp_path / "secret.wav", _tone(16_000, 3.0, seed=8), 16_000)
    (d / "link.wav").symlink_to(tmp_path / "secret.wav")
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps([
        {"File": "a.wav", "Caption": "A tone.", "split": "valid"},
        {"file": "copy.wav", "caption": "The same tone."},
        {"file": "b.ogg", "caption": "Another tone.", "split": "train"},
        {"file": "b.ogg", "caption": "Same file, other split.", "split": "test"},
        {"file": "link.wav", "caption": "Outside via a link."},
        ["not", "an", "object"],
    ]))
    report = import_folder(d, caps, root=tmp_path / "root")
    assert sorted(report.imported) == ["a.wav", "b.ogg"]
    reasons = _reasons(report)
    assert "same audio as a.wav" in reasons["copy.wav"]
    assert "conflicts" in reasons["b.ogg"]
    assert "escapes the folder" in reasons["link.wav"]
    assert "not a JSON object" in reasons["caps.json:6"]
    assert len(report.skipped) == 4
    rows = {r["source"]: r for r in _rows(tmp_path / "root")}
    assert rows["import:a.wav"]["split"] == "valid"
    assert rows["import:b.ogg"]["captions"] == ["Another tone."]


def test_parse_tags():
    assert parse_tags("['piano', 'slow']") == ["piano", "slow"]
    assert parse_tags(" piano , slow,,piano") == ["piano", "slow"]
    assert parse_tags(["a", " b "]) == ["a", "b"]
    assert parse_tags("") == []
    with pytest.raises(ValueError):
        parse_tags("[__import__('os').system('true')]")
    with pytest.raises(ValueError):
        parse_tags("[1, 2]")


def test_unsafe_path():
    for p in ["../a.wav", "sub/../../a.wav", "/abs/a.wav", "\\\\server\\a.wav", "C:\\a.wav",
              "sub\\..\\..\\a.wav"]:
        assert unsafe_path(p), p
    for p in ["a.wav", "sub/a.wav", "..a.wav", "./a.wav"]:
        assert not unsafe_path(p), p
