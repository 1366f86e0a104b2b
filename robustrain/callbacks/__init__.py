"""Lightning callbacks that record a signal of overfitting and can stop on it, handing back a model from before: one
stop, RollbackEarlyStopping (its rule, schedule, hand-back, agreement across ranks, exact resume, history and
replay), and the signals it is measured on, each a subclass with one measuring function:

- AliasingMonitor: the aliasing measure of the downsampling layers (Grabinski et al. 2022, Algorithm 1);
- PGDEarlyStopping: PGD accuracy on a training batch (Wong et al. 2020);
- GradientAlignmentMonitor: gradient alignment (Andriushchenko & Flammarion 2020);
- AbnormalExamplesMonitor: the share of abnormal adversarial examples (Lin et al. 2023);
- MaskingGapMonitor: the FGSM-PGD accuracy gap;
- MetricEarlyStopping: any metric the run logs (e.g. `val/acc_pgd`).
"""

from robustrain.callbacks.abnormal_examples_monitor import AbnormalExamplesMonitor
from robustrain.callbacks.aliasing_monitor import AliasingMonitor
from robustrain.callbacks.gradient_alignment_monitor import GradientAlignmentMonitor
from robustrain.callbacks.masking_gap_monitor import MaskingGapMonitor
from robustrain.callbacks.metric_early_stopping import MetricEarlyStopping
from robustrain.callbacks.pgd_early_stopping import PGDEarlyStopping
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.callbacks.run_summary import RunSummary

__all__ = [
    "AbnormalExamplesMonitor",
    "AliasingMonitor",
    "GradientAlignmentMonitor",
    "MaskingGapMonitor",
    "MetricEarlyStopping",
    "PGDEarlyStopping",
    "RollbackEarlyStopping",
    "RunSummary",
]
