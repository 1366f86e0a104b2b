#!/usr/bin/env bash
# Train, evaluate and compare seven SmallCNNs on the embedded MNIST5k digits (see docs/evaluation.md):
#   standard / FGSM / FGSM + aliasing stop / FGSM + PGD stop / PGD / worst-of-10 / anti-aliased (FGSM).
# Each run: `train.py fit` with its config, then `train.py test` with configs/eval_robust_mnist5k.yaml
# (RobustnessEvaluation + AliasingAnalysis) and configs/eval_spatial_mnist5k.yaml (SpatialEvaluation), both logging
# into the run's own dir, then one `python -m robustrain.evaluation.comparison_report` over all runs. Everything
# runs inside $WORK, so the configs' relative runs/<name>/ paths (logs and checkpoints) land in $WORK/runs/<name>,
# never in ./runs.
#
#   experiments/compare_mnist5k/run.sh            # full settings: the configs' epochs and evaluation protocols
#   QUICK=1 experiments/compare_mnist5k/run.sh    # the CPU evidence of docs/evaluation.md (lighter attacks, 250 images)
#
# Environment: WORK (default runs/compare_mnist5k), OUT (default docs/results/comparison), EPOCHS (overrides
# max_epochs), QUICK=1, SKIP_TRAIN=1 (re-evaluate existing checkpoints), SKIP_SPATIAL=1, ONLY=<name> (train and
# evaluate that run only; the report still covers all runs).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mkdir -p "${WORK:-$REPO/runs/compare_mnist5k}" && cd "${WORK:-$REPO/runs/compare_mnist5k}" && pwd)
OUT=${OUT:-$REPO/docs/results/comparison}
cd "$WORK"
COMMON=(--trainer.enable_progress_bar false --trainer.enable_model_summary false)

# name | training config (its logger name = its file name) | extra evaluation arguments (the net's architecture is
# not in the checkpoint's hyperparameters)
RUN_TABLE=(
  "standard|configs/mnist5k_standard.yaml|"
  "fgsm|configs/mnist5k_fgsm.yaml|"
  "fgsm_aliasing_stop|configs/compare_mnist5k_fgsm_aliasing_stop.yaml|"
  "fgsm_pgd_stop|configs/compare_mnist5k_fgsm_pgd_stop.yaml|"
  "pgd|configs/mnist5k_pgd.yaml|"
  "worst_of_10|configs/mnist5k_worst_of_10.yaml|"
  "antialiased|configs/compare_mnist5k_antialiased.yaml|--model.init_args.net.init_args.antialias 3"
)

TRAIN_ARGS=()
ROBUST_ARGS=()
SPATIAL_ARGS=()
if [[ -n "${EPOCHS:-}" ]]; then TRAIN_ARGS+=(--trainer.max_epochs "$EPOCHS"); fi
if [[ "${QUICK:-0}" == 1 ]]; then
  # the configs' epochs; validation PGD on 200 images with 10 steps of 0.03 (10 x 0.03 reaches eps 0.3)
  TRAIN_ARGS+=(--model.init_args.eval_size 200 --model.init_args.eval_steps 10 --model.init_args.eval_alpha 0.03)
  # 250 of the 500 test images (limit_test_batches 0.5 of 2 batches: a float, as jsonargparse reads 1 as 1.0 = all);
  # PGD-20-2, AutoAttack with 20 iterations and 1000 Square queries, curve PGD-20
  # (experiments/compare_mnist5k/quick_eval.yaml).
  ROBUST_ARGS+=(--config "$REPO/experiments/compare_mnist5k/quick_eval.yaml" --trainer.limit_test_batches 0.5)
  SPATIAL_ARGS+=(--trainer.limit_test_batches 0.5)
fi

for row in "${RUN_TABLE[@]}"; do
  IFS='|' read -r name config eval_extra <<<"$row"
  if [[ -n "${ONLY:-}" && "$name" != "$ONLY" ]]; then continue; fi
  logger_name=$(basename "$config" .yaml)
  ckpt="runs/$logger_name"
  if [[ "${SKIP_TRAIN:-0}" != 1 ]]; then
    echo "=== fit $name ($config)"
    rm -rf "runs/$logger_name"
    start=$(date +%s)
    python "$REPO/train.py" fit --config "$REPO/$config" "${COMMON[@]}" "${TRAIN_ARGS[@]}" >"fit_$name.log" 2>&1
    echo "    $(( $(date +%s) - start )) s, log $WORK/fit_$name.log"
  fi
  echo "=== robustness + aliasing $name"
  # shellcheck disable=SC2086
  python "$REPO/train.py" test --config "$REPO/configs/eval_robust_mnist5k.yaml" "${ROBUST_ARGS[@]}" "${COMMON[@]}" \
    $eval_extra --trainer.logger.init_args.name "$logger_name" --ckpt_path "$ckpt" >"robust_$name.log" 2>&1
  grep -E "^ +[a-z_0-9]+: " "robust_$name.log" || true
  if [[ "${SKIP_SPATIAL:-0}" != 1 ]]; then
    echo "=== spatial $name"
    # shellcheck disable=SC2086
    python "$REPO/train.py" test --config "$REPO/configs/eval_spatial_mnist5k.yaml" "${SPATIAL_ARGS[@]}" "${COMMON[@]}" \
      $eval_extra --trainer.logger.init_args.name "$logger_name" --ckpt_path "$ckpt" >"spatial_$name.log" 2>&1 \
      || echo "spatial evaluation of $name failed, see $WORK/spatial_$name.log (its column will show —)"
  fi
done

names=()
dirs=()
for row in "${RUN_TABLE[@]}"; do
  IFS='|' read -r name config _ <<<"$row"
  names+=("$name")
  dirs+=("runs/$(basename "$config" .yaml)")
done
# each run's own evaluation figures next to the table: $OUT/<name>/*.png (newest version that has them)
for row in "${RUN_TABLE[@]}"; do
  IFS='|' read -r name config _ <<<"$row"
  mkdir -p "$OUT/$name"
  for fig in accuracy_vs_eps perturbation_spectrum category_pies aliased_fraction_boxes per_transform_acc_heatmap; do
    found=$(ls -t runs/"$(basename "$config" .yaml)"/version_*/"$fig.png" 2>/dev/null | head -n 1 || true)
    if [[ -n "$found" ]]; then cp "$found" "$OUT/$name/"; fi
  done
done
cd "$REPO"
python -m robustrain.evaluation.comparison_report "${dirs[@]/#/$WORK/}" --names "${names[@]}" --out "$OUT"
