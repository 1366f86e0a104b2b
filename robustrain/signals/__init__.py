"""Cheap signals of catastrophic overfitting in FGSM training, as pure functions of a model and images.

- gradient_alignment: Andriushchenko & Flammarion (2020)'s cosine between input gradients at x and at x + eta.
- abnormal_fraction: Lin et al. (2023)'s share of training examples whose loss falls after the FGSM step.

The aliasing measure (Grabinski et al. 2022) has its own package, robustrain.aliasing; the callbacks that record
and stop on these signals are in robustrain.callbacks.
"""

from robustrain.signals.abnormal_examples import abnormal_examples, abnormal_fraction
from robustrain.signals.gradient_alignment import cosine_per_example, gradient_alignment, input_gradients

__all__ = ["abnormal_examples", "abnormal_fraction", "cosine_per_example", "gradient_alignment", "input_gradients"]
