"""``musicrl train mode``: the mode reward model trains on a real (tiny) token cache,
resumes, refuses bad setups, trains and exports an ensemble; and `--mode-reward` selects
stage S's candidates from the CLI, alone or in product with the tempo reward."""

from __future__ import annotations

import json

import jax
import numpy as np
from flax import nnx

from musicrl.cli import main
from rewards.mode import ModeEnsemble, ModeReward, load_mode
from training.loop import read_metrics


def test_mode_model_trains_resumes_and_reports_valid_accuracy(rl_data, tmp_path, capsys):
    root, _, _ = rl_data
    work = tmp_path / "mode"
    args = ["train", "mode", "--preset", "tiny", "--quiet", f"data_root={root}",
            f"loop.workdir={work}", "token_noise=0.1"]
    assert main([*args, "loop.steps=10"]) == 0            # 10 steps, exported
    assert load_mode(work / "weights")[1]["steps"] == 10
    assert main(args) == 0                                # resumes from 10 to 20, re-exports
    model, meta = load_mode(work / "weights")
    assert meta["steps"] == 20 and model.cfg.vocab == 16
    v = meta["valid"]
    assert 0.0 <= v["valid/mode_acc"] <= 1.0 and 0.0 <= v["valid/mode_chance"] <= 1.0
    steps = [r["step"] for r in read_metrics(work) if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 20      # no step trained twice
    # the report on real clips; a start longer than the clips is refused
    assert main(["eval", "mode", "--weights", str(work), "--root", str(root), "--split",
                 "valid", "--seconds", "2,4", "--out", str(tmp_path / "eval")]) == 0
    rep = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(rep["by_seconds"]) == {"2", "4"} and (tmp_path / "eval" / "mode.png").exists()
    assert main(["eval", "mode", "--weights", str(work), "--root", str(root), "--split",
                 "valid", "--seconds", "60", "--out", str(tmp_path / "eval2")]) == 2
    assert "score a shorter start" in capsys.readouterr().err
    # a vocabulary smaller than the tokens, a corpus without a token cache: refused
    assert main(["train", "mode", "--preset", "tiny", "--quiet", f"data_root={root}",
                 "model.vocab=4", f"loop.workdir={tmp_path / 'v'}"]) == 2
    assert "model.vocab" in capsys.readouterr().err
    assert main(["train", "mode", "--preset", "tiny", "--quiet", f"data_root={tmp_path}",
                 f"loop.workdir={tmp_path / 'n'}"]) == 2
    assert "musicrl tokenize" in capsys.readouterr().err


def test_mode_ensemble_and_selection_from_the_cli(rl_data, tmp_path, capsys):
    root, bundle, tempo = rl_data
    work = tmp_path / "ens"
    assert main(["train", "mode", "--preset", "tiny", "--quiet", f"data_root={root}",
                 "members=2", f"loop.workdir={work}"]) == 0
    ens, meta = load_mode(work / "weights")
    assert isinstance(ens, ModeEnsemble) and meta["members"] == 2
    assert len(meta["member_valid"]) == 2
    single, _ = load_mode(work / "member-0" / "weights")
    for a, b in zip(jax.tree.leaves(nnx.state(ens.members[0], nnx.Param)),
                    jax.tree.leaves(nnx.state(single, nnx.Param)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert ModeReward(work / "weights", combine="min") is not None

    # selection by mode alone, and by tempo × mode; the report names the scorer
    out = tmp_path / "clips"
    assert main(["generate", "a melancholic chorale", "a bright chorale at 120 bpm", "no words",
                 "--model", str(bundle), "--seconds", "2", "--semantic-best-of", "3",
                 "--tempo", "none", "--mode-reward", str(work / "weights"), "-o", str(out)]) == 0
    assert len(json.loads((out / "prompts.json").read_text())) == 3
    assert main(["generate", "a sad tune at 90 bpm", "--model", str(bundle), "--seconds", "2",
                 "--semantic-best-of", "2", "--tempo", str(tempo), "--mode-reward",
                 str(work / "weights"), "--mode-combine", "min",
                 "-o", str(tmp_path / "both.wav")]) == 0
    assert main(["generate", "x", "--model", str(bundle), "--semantic-best-of", "2",
                 "--tempo", "none", "-o", str(tmp_path / "x.wav")]) == 2
    assert "--mode-reward" in capsys.readouterr().err
    assert main(["generate", "x", "--model", str(bundle), "--semantic-best-of", "2",
                 "--mode-reward", str(tmp_path / "nope"), "-o", str(tmp_path / "y.wav")]) == 2
    assert "no mode model" in capsys.readouterr().err
    assert main(["generate", "x", "--model", str(bundle), "--semantic-best-of", "2",
                 "--mode-reward", str(work / "member-0" / "weights"), "--mode-combine", "min",
                 "-o", str(tmp_path / "z.wav")]) == 2
    assert "needs an ensemble" in capsys.readouterr().err


def test_codec_token_mode_model_ranks_stage_a_from_the_cli(rl_data, tmp_path, capsys):
    """``--preset tiny-acoustic``: the mode model on the first codec levels; it ranks stage
    A's renderings (``--acoustic-best-of``), and each stage's flag refuses the other's model."""
    root, bundle, _ = rl_data
    work = tmp_path / "aco"
    assert main(["train", "mode", "--preset", "tiny-acoustic", "--quiet", f"data_root={root}",
                 f"loop.workdir={work}"]) == 0
    model, meta = load_mode(work / "weights")
    assert model.cfg.levels == 2 and meta["steps"] == 10
    assert main(["eval", "mode", "--weights", str(work), "--root", str(root), "--split",
                 "valid", "--seconds", "1,2", "--out", str(tmp_path / "eval")]) == 0
    rep = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert 0.0 <= rep["by_seconds"]["2"]["mode_acc"] <= 1.0

    out = tmp_path / "clips"
    assert main(["generate", "a melancholic chorale", "a bright chorale", "--model", str(bundle),
                 "--seconds", "1", "--acoustic-best-of", "3", "--acoustic-mode-reward",
                 str(work / "weights"), "-o", str(out)]) == 0
    assert len(list(out.glob("*.wav"))) == 2
    capsys.readouterr()
    sem = tmp_path / "sem"
    assert main(["train", "mode", "--preset", "tiny", "--quiet", f"data_root={root}",
                 "loop.steps=2", f"loop.workdir={sem}"]) == 0
    bad = [
        (["--acoustic-best-of", "2"], "needs --acoustic-mode-reward"),
        (["--acoustic-best-of", "2", "--acoustic-mode-reward", str(sem / "weights")],
         "reads semantic tokens"),
        (["--acoustic-mode-reward", str(work / "weights")], "--acoustic-best-of N"),
        (["--acoustic-best-of", "2", "--acoustic-mode-reward", str(tmp_path / "nope")],
         "no mode model"),
        (["--semantic-best-of", "2", "--tempo", "none", "--mode-reward", str(work / "weights")],
         "reads codec tokens"),
    ]
    for extra, msg in bad:
        assert main(["generate", "x", "--model", str(bundle), "--seconds", "1", *extra,
                     "-o", str(tmp_path / "x.wav")]) == 2, extra
        assert msg in capsys.readouterr().err, extra
