"""The main job (configs/mnist5k_fgsm_aliasing.yaml): its tuning (tuning.py), its seeds (seeds.sh) and their table.

python -m experiments.main_job.tuning --out runs/flagship_tuning
bash experiments/main_job/seeds.sh
"""
