#!/usr/bin/env bash
# The recipe that made assets/small/lm-semantic and lm-acoustic (docs/generator.md):
# stage S once per dropout in S_DROPS, stage A once per dropout in A_DROPS, then, per
# stage, the run with the lowest valid loss exported in bf16 to $EXP.
#
#   DATA=data/small MULAN=assets/small/mulan bash training/recipes/generator_small.sh
#
# Defaults are what was run (on one H200, ≈ 5 min; on one CPU core expect ≈ 5 h), with
# S_TIME=85 A_TIME=150: the committed stages stopped at those caps (S at step 600 of 800,
# A at 1,697 of 2,000; keep_best exports the best evaluated step). The small presets take
# the MuLan prefix through its RVQ codebooks (model.mulan_embed=codebook).
# PYTHON, and S_TIME / A_TIME (a wall-clock cap per run, SIGTERM → clean stop) are optional.
set -uo pipefail
DATA=${DATA:-data/small}; MULAN=${MULAN:-assets/small/mulan}
W=${W:-runs/recipe}; EXP=${EXP:-runs/recipe/export}; PY=${PYTHON:-python}
mkdir -p "$W" "$EXP"
common="data_root=$DATA mulan=$MULAN loop.ckpt_every=100000 loop.log_every=50 eval_batches=8 eval_every=100"
cli() { timeout -s TERM "$1" "$PY" -c "import sys; from musicrl.cli import main; sys.exit(main(sys.argv[1:]))" "${@:2}"; }
for d in ${S_DROPS:-0.1 0.3}; do
  cli "${S_TIME:-86400}" train lm --stage semantic --preset small --quiet $common \
    loop.workdir="$W/lm-semantic-d$d" model.backbone.dropout="$d" \
    loop.steps="${S_STEPS:-800}" batch_size=64 warmup_steps=100
  echo "semantic dropout $d rc=$?"
done
for d in ${A_DROPS:-0.1}; do
  cli "${A_TIME:-86400}" train lm --stage acoustic --preset small --quiet $common \
    loop.workdir="$W/lm-acoustic-d$d" model.backbone.dropout="$d" \
    loop.steps="${A_STEPS:-2000}" batch_size=32 warmup_steps=200
  echo "acoustic dropout $d rc=$?"
done
"$PY" training/recipes/export_best_stage.py "$W" "$EXP"
