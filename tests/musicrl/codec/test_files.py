"""`musicrl codec encode|decode` and `musicrl tokenize` on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from musicrl.checkpoint import save_weights
from musicrl.cli import EXIT_USAGE, main
from musicrl.codec import Codec, CodecConfig, load_codec
from musicrl.config import resolve, to_dict
from musicrl.data.manifest import load_clips
from musicrl.data.tokens import TokenCacheError, load_tokens
from musicrl.semantic import SemanticTokenizer


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    cfg = resolve(CodecConfig, "tiny")
    save_weights(d / "codec", Codec(cfg, rngs=nnx.Rngs(0, vq=1)),
                 meta={"component": "codec", "config": to_dict(cfg)})
    tok = SemanticTokenizer("librosa", 16)
    tok.centroids[...] = np.random.default_rng(0).standard_normal((16, tok.features.dim)).astype(
        np.float32)
    save_weights(d / "semantic", tok, meta={"config": {"features": "librosa", "num_clusters": 16}})
    return d


def test_encode_any_rate_and_channels_then_decode(tiny_weights, tmp_path, capsys):
    sr = 44_100
    t = np.arange(int(1.5 * sr)) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1) * 0.3
    sf.write(tmp_path / "in.wav", stereo, sr)
    assert main(["codec", "encode", str(tmp_path / "in.wav"), "-o", str(tmp_path / "t.npz"),
                 "--weights", str(tiny_weights / "codec")]) == 0
    out = capsys.readouterr().out
    assert "resampled 44100 Hz → 16000 Hz" in out and "downmixed 2 channels" in out
    with np.load(tmp_path / "t.npz") as z:
        codes = z["codes"]
        assert codes.shape == (75, 4) and int(z["samples"]) == 24_000
    assert main(["codec", "decode", str(tmp_path / "t.npz"), "-o", str(tmp_path / "out.wav"),
                 "--weights", str(tiny_weights / "codec")]) == 0
    y, sr_out = sf.read(tmp_path / "out.wav")
    assert sr_out == 16_000 and y.shape == (24_000,)
    # the file tokens are what the codec's own encode gives
    codec, _ = load_codec(tiny_weights / "codec")
    from musicrl.audio import load_audio

    ref = np.asarray(codec.encode(load_audio(tmp_path / "in.wav")[None]))[0]
    np.testing.assert_array_equal(codes, ref)


@pytest.mark.parametrize("case", ["text_as_wav", "not_tokens", "out_of_range", "missing"])
def test_bad_files_get_clear_errors(case, tiny_weights, tmp_path, capsys):
    w = ["--weights", str(tiny_weights / "codec")]
    if case == "text_as_wav":
        (tmp_path / "x.wav").write_text("hello")
        code = main(["codec", "encode", str(tmp_path / "x.wav"), *w])
        expect = "cannot decode as audio"
    elif case == "not_tokens":
        np.savez(tmp_path / "x.npz", foo=np.zeros(3))
        code = main(["codec", "decode", str(tmp_path / "x.npz"), *w])
        expect = "not a token file"
    elif case == "out_of_range":
        np.savez(tmp_path / "x.npz", codes=np.full((5, 2), 999, np.int16), sample_rate=16000,
                 codebook_size=64)
        code = main(["codec", "decode", str(tmp_path / "x.npz"), *w])
        expect = "codes outside 0..63"
    else:
        code = main(["codec", "encode", str(tmp_path / "nope.wav"), *w])
        expect = "no such file"
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and expect in err and "Traceback" not in err
    assert not (tmp_path / "x.tokens.npz").exists()


def test_tokenize_is_incremental_and_checked(tiny_corpus, tiny_weights, tmp_path, capsys):
    cfg, _ = tiny_corpus
    args = ["tokenize", "--root", cfg.root, "--out", str(tmp_path / "tok"), "--quiet",
            "--codec", str(tiny_weights / "codec"), "--semantic", str(tiny_weights / "semantic")]
    assert main(args) == 0
    clips = load_clips(cfg.root)
    assert f"{len(clips)} clips tokenized, 0 already cached" in capsys.readouterr().out
    toks = load_tokens(tmp_path / "tok")
    assert set(toks) == {c.id for c in clips}
    sem, aco = toks[clips[0].id]
    n = int(cfg.clip_seconds * 16_000)
    assert sem.shape == (n // 640,) and aco.shape == (n // 320, 4)
    # second run: nothing new
    assert main(args) == 0
    assert f"0 clips tokenized, {len(clips)} already cached" in capsys.readouterr().out
    assert len(load_tokens(tmp_path / "tok", split="test")) == sum(c.split == "test" for c in clips)
    # a corrupted shard is detected
    shard = next((tmp_path / "tok").glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(TokenCacheError, match="checksum mismatch"):
        load_tokens(tmp_path / "tok")
    # tokens of another tokenizer are refused
    index = json.loads((tmp_path / "tok" / "tokens.json").read_text())
    index["identity"]["codec"] = "something-else"
    (tmp_path / "tok" / "tokens.json").write_text(json.dumps(index))
    assert main(args) == EXIT_USAGE
    assert "other tokenizers" in capsys.readouterr().err


def test_tokenizer_identity_is_of_the_weights_not_the_file(tiny_weights, tmp_path):
    """Re-saving the same weights deflated or stored keeps a cache valid; other weights
    do not."""
    from musicrl.data.tokens import _identity

    codec, meta = load_codec(tiny_weights / "codec")
    save_weights(tmp_path / "stored", codec, meta=meta, compress=False)
    save_weights(tmp_path / "deflated", codec, meta=meta, compress=True)
    a, b = (_identity({}, tmp_path / n) for n in ("stored", "deflated"))
    assert (tmp_path / "stored" / "weights.npz").read_bytes() != \
        (tmp_path / "deflated" / "weights.npz").read_bytes()
    assert a == b
    cfg = resolve(CodecConfig, "tiny")
    save_weights(tmp_path / "other", Codec(cfg, rngs=nnx.Rngs(1, vq=2)), meta=meta)
    assert _identity({}, tmp_path / "other") != a
