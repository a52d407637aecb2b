"""Shared fixtures: small corpora built once per test session."""

from __future__ import annotations

import pytest

from musicrl.config import resolve
from musicrl.data.build import build_corpus
from musicrl.data.config import DataConfig


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The `tiny` preset corpus (18 clips of 4 s), built with two worker processes."""
    root = tmp_path_factory.mktemp("tiny_corpus")
    cfg = resolve(DataConfig, "tiny", [f"root={root}", "workers=2"])
    report = build_corpus(cfg, progress=False)
    assert report.complete
    return cfg, report


@pytest.fixture(scope="session")
def label_corpus(tmp_path_factory):
    """Full-length 10 s clips, most with drums: for checking labels against audio."""
    root = tmp_path_factory.mktemp("label_corpus")
    cfg = resolve(DataConfig, "tiny", [f"root={root}", "clip_seconds=10", "pieces_per_style=5",
                                       "clips_per_piece=2", "drum_fraction=0.8", "workers=2",
                                       "seed=7"])
    report = build_corpus(cfg, progress=False)
    assert report.complete
    return cfg, report


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop jit caches after each test module: every compiled XLA executable maps code
    pages, and the whole suite in one process otherwise runs into the kernel's
    vm.max_map_count (65530 by default) and XLA's compiler segfaults."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
