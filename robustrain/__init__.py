"""robustrain: Lightning training and evaluation of image classifiers robust to attacks, rotations and shifts."""

__version__ = "0.1.0"
