"""Fixtures shared by the training tests."""

from __future__ import annotations

import shutil

import pytest

from musicrl.cli import main
from musicrl.data.tokens import tokenize_corpus
from musicrl.testing import tiny_bundle


@pytest.fixture(scope="session")
def rl_data(tiny_corpus, tmp_path_factory):
    """A copy of the tiny corpus with its token cache at <root>/tokens, a random tiny
    bundle, and a tempo model trained on those tokens."""
    cfg, _ = tiny_corpus
    work = tmp_path_factory.mktemp("rl")
    root = work / "corpus"
    shutil.copytree(cfg.root, root)
    bundle = tiny_bundle(work / "bundle")
    assert main(["train", "semantic", "--preset", "tiny", "--quiet", f"data_root={root}",
                 f"workdir={work / 'sem'}", f"cache_dir={work / 'sem' / 'cache'}"]) == 0
    tokenize_corpus(root, root / "tokens", codec_path=str(bundle / "codec"),
                    semantic_path=str(work / "sem" / "weights"), progress=False)
    assert main(["train", "tempo", "--preset", "tiny", "--quiet", f"data_root={root}",
                 f"loop.workdir={work / 'tempo'}"]) == 0
    return root, bundle, work / "tempo" / "weights"
