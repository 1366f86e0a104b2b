"""The spatial-robustness table on MNIST5k (standard vs worst-of-10 vs anti-aliased SmallCNN).

python -m experiments.spatial.table --out runs/spatial_table
"""
