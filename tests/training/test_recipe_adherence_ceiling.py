"""The adherence-ceiling recipe on the tiny corpus: a perfect system's ratio from labels."""

import json

import numpy as np
import pytest

from training.recipes import adherence_ceiling as recipe


def test_ceiling_is_one_over_sum_of_squared_class_shares(tiny_corpus, tmp_path):
    from musicrl.data.manifest import load_clips

    cfg, _ = tiny_corpus
    split = "train"
    clips = [c for c in load_clips(cfg.root, splits=[split]) if c.captions]
    table = recipe.main(["--root", str(cfg.root), "--split", split,
                         "--json", str(tmp_path / "c.json")])
    drums = np.array([bool(c.labels.get("drums")) for c in clips])
    shares = np.array([drums.mean(), 1 - drums.mean()])
    # permutation chance of the labels against themselves ≈ Σ p², 20 permutations
    assert table["drums"]["perfect_ratio"] == pytest.approx(1 / np.sum(shares ** 2), rel=0.15)
    assert table["drums"]["perfect_ratio"] <= 2.0 + 0.3
    assert json.loads((tmp_path / "c.json").read_text())["attributes"]["drums"]["n"] == len(clips)


def test_refuses_a_report_of_other_prompts(tiny_corpus, tmp_path):
    cfg, _ = tiny_corpus
    (tmp_path / "r.json").write_text(json.dumps({"prompts": 3, "split": "train"}))
    with pytest.raises(SystemExit, match="pass the report of the whole split"):
        recipe.main(["--root", str(cfg.root), "--split", "train",
                     "--report", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit, match="no corpus"):
        recipe.main(["--root", str(tmp_path / "nope")])
