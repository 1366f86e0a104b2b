#!/usr/bin/env bash
# The FGSM-RS recipe (configs/mnist5k_fgsm_aliasing.yaml) for several seeds, each evaluated with
# configs/eval_robust_mnist5k.yaml (clean, FGSM, PGD-50-10, AutoAttack at 100 iterations on the 500 test digits).
# The model evaluated is the one the run hands back: aliasing_stop.ckpt if the aliasing stop fired, else last.ckpt.
#   bash experiments/fgsm_rs_recipe/seeds.sh [seed ...]     (default seeds 0 1 2; OMP_NUM_THREADS=1 unless set)
# Writes runs/fgsm_rs_recipe_seed<k>/ (training) and runs/fgsm_rs_recipe_seed<k>_eval/ (robustness.json), then the table:
#   python -m experiments.fgsm_rs_recipe.table runs/fgsm_rs_recipe_seed*_eval
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
seeds=("$@"); [ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2)
mkdir -p runs
for seed in "${seeds[@]}"; do
  name=fgsm_rs_recipe_seed${seed}
  rm -rf "runs/${name}" "runs/${name}_eval"
  # the run name moves the log and checkpoint folders: runs/<name>/version_N/
  python train.py fit --config configs/mnist5k_fgsm_aliasing.yaml --trainer.logger.init_args.name "${name}" \
    --seed_everything "${seed}" --trainer.enable_progress_bar false
  ckpt="runs/${name}"  # its newest version's last.ckpt
  latest=$(ls -d runs/${name}/version_* | sort -V | tail -1)
  [ -f "${latest}/aliasing_stop.ckpt" ] && ckpt="${latest}/aliasing_stop.ckpt"
  python train.py test --config configs/eval_robust_mnist5k.yaml --ckpt_path "${ckpt}" \
    --trainer.logger.init_args.name "${name}_eval" --trainer.enable_progress_bar false
done
python -m experiments.fgsm_rs_recipe.table runs/fgsm_rs_recipe_seed*_eval
