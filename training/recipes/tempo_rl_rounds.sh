#!/usr/bin/env bash
# Rounds of RL on stage S with the tempo reward (docs/generator.md, "RL on stage S"): round
# 1 starts from the bundle's stage S, each later round from the one before, with the KL
# anchored to its own start (a fresh optimizer and schedule per round). Then a bundle
# folder that links the bundle's other components beside the last round's stage S, for
# `musicrl eval generate --model $W/bundle` and `musicrl app` systems.
#
#   ROUNDS=4 bash training/recipes/tempo_rl_rounds.sh          # ≈ 22 min a round, two cores
#
# Needs data/small and data/small-tempo (docs/data.md; no token caches: the prompts are
# captions). A round already finished is skipped and an interrupted one resumes, so the
# same command continues after a crash. BUNDLE, W, ROUNDS, STEPS and PYTHON are optional.
set -euo pipefail
BUNDLE=${BUNDLE:-assets/small}; W=${W:-runs/rl-rounds}; PY=${PYTHON:-python}
ROUNDS=${ROUNDS:-4}; STEPS=${STEPS:-300}
common="--preset small bundle=$BUNDLE extra_data=data/small-tempo lr=2e-4 reward_width=0.15 loop.steps=$STEPS"
cli() { "$PY" -c "import sys; from musicrl.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }
prev=""
for r in $(seq 1 "$ROUNDS"); do
  if [ "$r" = 1 ]; then shape="prompts=16 samples=4"; else shape="prompts=8 samples=8 init=$prev/weights"; fi
  # shellcheck disable=SC2086
  cli train rl $common $shape loop.workdir="$W/round$r"
  prev="$W/round$r"
done
mkdir -p "$W/bundle"
for c in codec mulan lm-acoustic semantic; do ln -sfn "$(realpath "$BUNDLE/$c")" "$W/bundle/$c"; done
ln -sfn "$(realpath "$prev/weights")" "$W/bundle/lm-semantic"
echo "bundle with round $ROUNDS's stage S: $W/bundle"
