"""Train or evaluate a robustrain model: `python train.py fit --config configs/mnist5k_fgsm.yaml` (see README)."""

from robustrain.cli import main

if __name__ == "__main__":
    main()
