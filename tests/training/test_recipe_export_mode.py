"""training/recipes/export_mode.py: a trained mode ensemble → bf16, kept only when the
evaluation shows no loss; a refusal leaves the folder as it was."""

import json
import sys

import numpy as np
import pytest

from musicrl.cli import main as cli
from rewards.mode import ModeReward, load_mode
from training.recipes import export_mode


def _export(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["export_mode", *map(str, argv)])
    export_mode.main()


def test_export_casts_to_bf16_records_the_check_and_refuses_a_loss(rl_data, tmp_path,
                                                                   monkeypatch):
    root, _, _ = rl_data
    work = tmp_path / "ens"
    assert cli(["train", "mode", "--preset", "tiny", "--quiet", f"data_root={root}",
                "members=2", "loop.steps=10", f"loop.workdir={work}"]) == 0
    dst = tmp_path / "asset"
    _export(monkeypatch, work / "weights", dst, "--root", root, "--seconds", "2,4",
            "--note", "two members")
    model, meta = load_mode(dst)
    assert meta["note"] == "two members" and meta["members"] == 2 and meta["steps"] == 10
    check = meta["eval_bf16_vs_f32"]
    assert set(check["by_split"]) == {"valid", "test"}
    assert set(check["by_split"]["test"]["bfloat16"]) == {"2", "4"}
    assert 0.0 <= check["max_abs_member_prob_change"]["test"] < 0.05
    index = json.loads((dst / "weights.json").read_text())
    assert "bfloat16" in json.dumps(index)
    # the bf16 copy scores as the float32 one, to bf16 precision, ensemble and @min alike
    f32, b16 = ModeReward(work / "weights", "min"), ModeReward(dst, "min")
    toks = np.random.default_rng(0).integers(0, model.cfg.vocab, (3, 60))
    np.testing.assert_allclose(b16(["minor"] * 3, toks), f32(["minor"] * 3, toks), atol=0.02)

    before = (dst / "weights.npz").read_bytes()
    with pytest.raises(SystemExit, match="left as it was"):         # any drop is too much
        _export(monkeypatch, work / "weights", dst, "--root", root, "--seconds", "2",
                "--tol", "-1")
    assert (dst / "weights.npz").read_bytes() == before
    with pytest.raises(SystemExit, match="export_mode: "):
        _export(monkeypatch, tmp_path / "nope", dst, "--root", root)
