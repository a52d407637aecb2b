"""The pipeline: text → tokens → audio on a tiny random bundle; determinism and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from musicrl.cli import main
from musicrl.pipeline import GenerationError, Pipeline
from musicrl.testing import tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def pipe(bundle):
    return Pipeline.from_pretrained(bundle)


def test_same_seed_same_audio_different_seed_different_audio(pipe):
    a = pipe.generate(["a calm piano piece", "fast drums"], seconds=1.0, seed=0)
    b = pipe.generate(["a calm piano piece", "fast drums"], seconds=1.0, seed=0)
    c = pipe.generate(["a calm piano piece", "fast drums"], seconds=1.0, seed=1)
    assert a.shape == (2, pipe.sample_rate) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    assert np.abs(a[0] - a[1]).max() > 1e-3          # rows of a batch differ
    assert pipe.timing.total > 0


def test_tokens_and_lengths(pipe):
    wav, tok = pipe.generate("x", seconds=2.0, guidance=(2.0, 1.0), temperature=0.0,
                             return_tokens=True)
    assert wav.shape == (1, 2 * pipe.sample_rate)
    assert tok["semantic"].shape == (1, 50)
    assert tok["acoustic"].shape == (1, 100, pipe.acoustic.cfg.levels)


def test_best_of_keeps_the_candidate_mulan_scores_highest(pipe):
    prompts = ["a calm piano piece", "fast drums"]
    wav, tok = pipe.generate(prompts, seconds=1.0, seed=3, best_of=3, return_tokens=True)
    assert wav.shape == (2, pipe.sample_rate) and tok["semantic"].shape[0] == 2
    scores = pipe.last_scores
    assert scores.shape == (2, 3) and pipe.timing.rerank > 0
    # the kept clips are the argmax candidates of the same batch sampled without reranking
    rows = [p for p in prompts for _ in range(3)]
    every = pipe.generate(rows, seconds=1.0, seed=3)
    assert pipe.last_scores is None                  # plain sampling leaves no stale scores
    np.testing.assert_array_equal(wav, every[np.arange(2) * 3 + scores.argmax(1)])
    from musicrl.mulan import embed_audio_long, embed_prompts_batched
    again = np.einsum("be,bne->bn", embed_prompts_batched(pipe.mulan, prompts),
                      embed_audio_long(pipe.mulan, every).reshape(2, 3, -1))
    np.testing.assert_allclose(scores, again, atol=1e-5)


def test_semantic_best_of_passes_the_top_scored_stage_s_candidate_to_stage_a(pipe):
    prompts = ["a calm piano piece", "fast drums", "no number here"]
    seen = {}

    def score(rows, tokens):                  # a reward read from the semantic tokens
        seen["rows"], seen["tokens"] = list(rows), np.asarray(tokens)
        s = np.asarray(tokens, np.float64).sum(axis=1)
        return np.where([r == "no number here" for r in rows], np.nan, s)

    wav, tok = pipe.generate(prompts, seconds=1.0, seed=5, semantic_best_of=4,
                             semantic_score=score, return_tokens=True)
    assert wav.shape == (3, pipe.sample_rate)
    assert seen["rows"] == [p for p in prompts for _ in range(4)]
    cand = seen["tokens"].reshape(3, 4, -1)
    s = pipe.last_semantic_scores
    assert s.shape == (3, 4)
    best = cand[np.arange(3), [int(np.argmax(s[0])), int(np.argmax(s[1])), 0]]
    np.testing.assert_array_equal(tok["semantic"], best)     # all-NaN keeps the first
    assert not np.array_equal(cand[0, 0], cand[0, 1])        # candidates differ
    # deterministic, and plain sampling clears the scores
    again = pipe.generate(prompts, seconds=1.0, seed=5, semantic_best_of=4,
                          semantic_score=score)
    np.testing.assert_array_equal(wav, again)
    pipe.generate(prompts[:1], seconds=1.0)
    assert pipe.last_semantic_scores is None
    with pytest.raises(GenerationError, match="needs semantic_score"):
        pipe.generate(prompts, seconds=1.0, semantic_best_of=2)
    with pytest.raises(GenerationError, match="one score each"):
        pipe.generate(prompts, seconds=1.0, semantic_best_of=2,
                      semantic_score=lambda r, t: np.zeros(1))
    with pytest.raises(GenerationError, match="semantic_best_of"):
        pipe.generate(prompts, seconds=1.0, semantic_best_of=0, semantic_score=score)


def test_acoustic_best_of_keeps_the_top_scored_stage_a_rendering(pipe):
    prompts = ["a calm piano piece", "fast drums"]
    seen = {}

    def score(rows, codes):                   # a reward read from the codec tokens
        seen["rows"], seen["codes"] = list(rows), np.asarray(codes)
        return np.asarray(codes, np.float64)[:, :, 0].mean(axis=1)

    wav, tok = pipe.generate(prompts, seconds=1.0, seed=3, acoustic_best_of=3,
                             acoustic_score=score, return_tokens=True)
    assert seen["rows"] == [p for p in prompts for _ in range(3)]
    cand = seen["codes"].reshape(2, 3, *seen["codes"].shape[1:])
    s = pipe.last_acoustic_scores
    assert s.shape == (2, 3) and pipe.last_semantic_scores is None
    np.testing.assert_array_equal(tok["acoustic"], cand[np.arange(2), s.argmax(1)])
    assert not np.array_equal(cand[0, 0], cand[0, 1])        # renderings differ
    # the chosen rendering is what gets decoded: same audio as decoding it directly
    from musicrl.pipeline import _decode_codes
    direct = np.asarray(_decode_codes(pipe.codec, tok["acoustic"]))[:, :wav.shape[1]]
    np.testing.assert_allclose(wav, direct, atol=1e-6)
    # one rendering: the plain path, bit for bit
    plain = pipe.generate(prompts, seconds=1.0, seed=3)
    one = pipe.generate(prompts, seconds=1.0, seed=3, acoustic_best_of=1, acoustic_score=score)
    np.testing.assert_array_equal(plain, one)
    with pytest.raises(GenerationError, match="needs acoustic_score"):
        pipe.generate(prompts, seconds=1.0, acoustic_best_of=2)
    with pytest.raises(GenerationError, match="acoustic_best_of"):
        pipe.generate(prompts, seconds=1.0, acoustic_best_of=0, acoustic_score=score)


@pytest.mark.parametrize("kwargs,match", [
    ({"prompts": []}, "no prompts"),
    ({"prompts": ["   "]}, "empty"),
    ({"prompts": ["x" * 5000]}, "characters"),
    ({"prompts": [3]}, "not text"),
    ({"prompts": ["ok"], "seconds": 0.0}, "seconds"),
    ({"prompts": ["ok"], "seconds": 1e6}, "seconds"),
    ({"prompts": ["ok"], "guidance": -1.0}, "guidance"),
    ({"prompts": ["ok"], "temperature": -1.0}, "temperature"),
    ({"prompts": ["ok"], "top_p": 0.0}, "top_p"),
    ({"prompts": ["ok"], "seed": -3}, "seed"),
    ({"prompts": ["ok"], "best_of": 0}, "best_of"),
    ({"prompts": ["ok"], "best_of": 1000}, "best_of"),
])
def test_bad_input_is_refused(pipe, kwargs, match):
    prompts = kwargs.pop("prompts")
    with pytest.raises(GenerationError, match=match):
        pipe.generate(prompts, **kwargs)


def test_bad_bundles_are_refused(bundle, tmp_path):
    with pytest.raises(GenerationError, match="no such model folder"):
        Pipeline.from_pretrained(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    shutil.rmtree(broken / "lm-acoustic")
    with pytest.raises(GenerationError, match="missing acoustic"):
        Pipeline.from_pretrained(broken)
    # the two stages swapped: refused by kind
    with pytest.raises(Exception, match="semantic stage was expected|acoustic stage"):
        Pipeline.from_pretrained(bundle, semantic=bundle / "lm-acoustic")
    # a stage from another config (vocabulary does not fit the codec)
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    meta = json.loads((other / "lm-acoustic" / "meta.json").read_text())
    meta["config"]["vocab"] = 32
    (other / "lm-acoustic" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="another model config"):
        Pipeline.from_pretrained(other)


def test_generate_cli(bundle, tmp_path, capsys):
    out = tmp_path / "one.wav"
    assert main(["generate", "a calm piano piece", "--model", str(bundle), "--seconds", "1",
                 "-o", str(out)]) == 0
    assert out.stat().st_size > 1000
    prompts = tmp_path / "p.txt"
    prompts.write_text("# comment\nfirst prompt\n\nsecond prompt\n")
    folder = tmp_path / "many"
    assert main(["generate", "--prompts-file", str(prompts), "--n", "2", "--model", str(bundle),
                 "--seconds", "1", "-o", str(folder)]) == 0
    index = json.loads((folder / "prompts.json").read_text())
    assert [r["prompt"] for r in index] == ["first prompt"] * 2 + ["second prompt"] * 2
    assert main(["generate", "", "--model", str(bundle), "-o", str(out)]) == 2
    assert main(["generate", "x", "--model", str(bundle), "--best-of", "0", "-o", str(out)]) == 2
    assert "best_of" in capsys.readouterr().err
    best = tmp_path / "best.wav"
    assert main(["generate", "a calm piano piece", "--model", str(bundle), "--seconds", "1",
                 "--best-of", "2", "-o", str(best)]) == 0 and best.stat().st_size > 1000
    assert main(["generate", "x", "--model", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "no such model folder" in capsys.readouterr().err
