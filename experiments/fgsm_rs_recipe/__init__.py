"""The FGSM-RS recipe (configs/mnist5k_fgsm_aliasing.yaml): its tuning (tuning.py), its seeds (seeds.sh), their table.

python -m experiments.fgsm_rs_recipe.tuning --out runs/fgsm_rs_recipe_tuning
bash experiments/fgsm_rs_recipe/seeds.sh
"""
