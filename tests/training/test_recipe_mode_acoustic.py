"""The stage-A selection recipe's analysis, on saved rows (no sampling)."""

import json
import sys

import numpy as np
import pytest

from training.recipes import mode_acoustic_selection as recipe


def test_from_rows_measures_an_oracle_and_a_blind_ranker(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    n, na = 60, 4
    label = rng.choice(["major", "minor"], n)
    est = rng.choice(["major", "minor"], (n, na))
    est[:, 0] = label                      # one rendering per prompt is right
    est[:, 1] = np.where(label == "major", "minor", "major")
    oracle = (est == label[:, None]).astype(float)    # scores the right one highest
    blind = np.tile(np.arange(1.0, na + 1), (n, 1))  # always the last
    recipe.save_rows(tmp_path / "rows.npz", est, label, label, {"oracle": oracle, "blind": blind},
                     {"bundle": "b", "split": "valid", "ns": 8, "semantic_mode": "m"})
    monkeypatch.setattr(sys, "argv", ["x", "--from-rows", str(tmp_path / "rows.npz"),
                                      "--na", "2,4", "--json", str(tmp_path / "r.json")])
    recipe.main()
    res = json.loads((tmp_path / "r.json").read_text())["result"]
    random4 = res["random rendering (mean over all)"]["4"]["mode_acc"]
    assert res["oracle"]["4"]["mode_acc"] == 1.0
    assert res["oracle"]["4"]["gain_vs_random"] == pytest.approx(1.0 - random4)
    assert res["oracle"]["4"]["gain_lo95"] > 0
    blind_acc = float(np.mean(est[:, 3] == label))
    assert res["blind"]["4"]["mode_acc"] == pytest.approx(blind_acc)
    assert res["blind"]["4"]["gain_lo95"] <= res["blind"]["4"]["gain_vs_random"] \
        <= res["blind"]["4"]["gain_hi95"]
    assert res["oracle"]["1"]["mode_acc"] == 1.0      # N_A = 1: the first rendering


def test_from_rows_refuses_a_file_it_did_not_write(tmp_path, monkeypatch):
    (tmp_path / "x.npz").write_bytes(b"not a rows file")
    monkeypatch.setattr(sys, "argv", ["x", "--from-rows", str(tmp_path / "x.npz")])
    with pytest.raises(SystemExit, match="not a rows file"):
        recipe.main()
