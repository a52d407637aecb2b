"""The human-ratings JSONL: good files load, bad rows are refused with line and reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from rewards.ratings import RatingsError, load_ratings, read_rating_audio


@pytest.fixture
def folder(tmp_path):
    t = np.arange(16_000) / 16_000
    sf.write(tmp_path / "a.wav", 0.2 * np.sin(2 * np.pi * 440 * t), 16_000)
    sf.write(tmp_path / "b.wav", np.stack([0.1 * np.sin(2 * np.pi * 330 * t[:8000])] * 2, 1),
             8_000)  # stereo, 8 kHz, 1 s
    sf.write(tmp_path / "short.wav", np.zeros(1000), 16_000)
    return tmp_path


def _write(folder, lines):
    p = folder / "ratings.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return p


def test_good_file_loads_relative_paths_and_resamples(folder):
    p = _write(folder, ["# header comment", {"audio": "a.wav", "rating": 4, "rater": "r1"}, "",
                        {"audio": str(folder / "b.wav"), "rating": 1.5, "prompt": "p"}])
    rows = load_ratings(p)
    assert [r.rating for r in rows] == [4.0, 1.5] and [r.line for r in rows] == [2, 4]
    assert rows[0].audio == folder / "a.wav" and rows[1].prompt == "p"
    x = read_rating_audio(rows[1])
    assert x.ndim == 1 and len(x) == pytest.approx(16_000, abs=2)


@pytest.mark.parametrize("row, reason", [
    ('{"audio": "a.wav", "rating": 4', "not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ({"audio": "a.wav"}, "missing required key 'rating'"),
    ({"rating": 3}, "missing required key 'audio'"),
    ({"audio": "a.wav", "rating": 6}, "'rating' must be a number from 1 to 5"),
    ({"audio": "a.wav", "rating": "4"}, "'rating' must be a number from 1 to 5"),
    ({"audio": "a.wav", "rating": True}, "'rating' must be a number from 1 to 5"),
    ({"audio": "a.wav", "rating": 3, "score": 2}, "unknown key"),
    ({"audio": "a.wav", "rating": 3, "rater": 7}, "'rater' must be a string"),
    ({"audio": "missing.wav", "rating": 3}, "does not exist"),
    ({"audio": "short.wav", "rating": 3}, "at least 0.25 s"),
])
def test_bad_rows_are_refused_with_line_and_reason(folder, row, reason):
    p = _write(folder, [{"audio": "a.wav", "rating": 3}, row])
    with pytest.raises(RatingsError, match=reason) as e:
        load_ratings(p)
    assert f"{p}:2:" in str(e.value)


def test_missing_and_empty_files_are_refused(folder):
    with pytest.raises(RatingsError, match="no such ratings file"):
        load_ratings(folder / "nope.jsonl")
    with pytest.raises(RatingsError, match="no ratings"):
        load_ratings(_write(folder, ["# nothing"]))
