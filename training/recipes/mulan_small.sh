#!/usr/bin/env bash
# MuLan on the small preset, four phases, each a finetune of the one before, then the bf16
# export (docs/mulan.md):
#
#   DATA=data/small bash training/recipes/mulan_small.sh                # all four phases
#   FROM=<v1 weights> DATA=data/small bash training/recipes/mulan_small.sh   # 3-4 only
#
# 1. contrastive pretraining                                  1,300 steps, ≈ 3,040 s
# 2. counterfactual hard negatives (mode / tempo flipped)       450 steps, ≈ 1,630 s
# 3. + pitch-class and beat-period branches, aspect-list captions  600 steps, ≈ 2,680 s
# 4. + label-prompt loss, RVQ fitted on audio and captions      400 steps, ≈ 1,900 s
# (seconds on one core of this CPU). Phases 1-2 make v1 (the previous committed model);
# phases 3-4 make model C, the committed assets/small/mulan. A new MuLan goes into a
# bundle only with both generator stages retrained from scratch on its tokens:
#   MULAN=$OUT bash training/recipes/generator_small.sh       (≈ 5 min on one H200)
# PYTHON is optional; W is the work folder, OUT the export folder.
set -euo pipefail
DATA=${DATA:-data/small}; W=${W:-runs/mulan-recipe}; OUT=${OUT:-$W/export}
PY=${PYTHON:-python}; FROM=${FROM:-}
cli() { "$PY" -c "import sys; from musicrl.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }
common="--preset small data_root=$DATA"
if [ -z "$FROM" ]; then
  cli train mulan $common loop.steps=1300 lr=8e-4 warmup_steps=150 eval_every=650 \
    hard_negatives=false loop.workdir="$W/1-contrastive"
  cli train mulan $common init="$W/1-contrastive/weights" loop.steps=450 lr=3e-4 \
    warmup_steps=50 eval_every=450 loop.workdir="$W/2-hard-negatives"
  FROM="$W/2-hard-negatives/weights"
fi
cli train mulan $common init="$FROM" model.music_features=true tag_prob=0.3 \
  loop.steps=600 lr=4e-4 warmup_steps=50 eval_every=300 loop.workdir="$W/3-music-features"
cli train mulan $common init="$W/3-music-features/weights" model.music_features=true \
  tag_prob=0.3 label_weight=1.0 rvq_text=true loop.steps=400 lr=3e-4 warmup_steps=30 \
  eval_every=200 loop.workdir="$W/4-label-prompts"
"$PY" training/recipes/export_mulan.py "$W/4-label-prompts/weights" "$OUT" \
  --root "$DATA" --command "DATA=$DATA bash training/recipes/mulan_small.sh"
echo "exported: $OUT   (evaluate: musicrl eval mulan --weights $OUT)"
