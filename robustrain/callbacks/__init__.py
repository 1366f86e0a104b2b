"""Lightning callbacks that record a signal of overfitting every epoch and can stop on it, handing back the weights
from before (all on RollbackEarlyStopping's machinery: one decision across ranks, exact resume, history and replay):

- AliasingMonitor: the aliasing measure of the downsampling layers (Grabinski et al. 2022, Algorithm 1);
- PGDEarlyStopping: PGD accuracy on a training batch (Wong et al. 2020);
- GradientAlignmentMonitor: gradient alignment (Andriushchenko & Flammarion 2020);
- AbnormalExamplesMonitor: the share of abnormal adversarial examples (Lin et al. 2023);
- MaskingGapMonitor: the FGSM-PGD accuracy gap.
"""

from robustrain.callbacks.abnormal_examples_monitor import AbnormalExamplesMonitor
from robustrain.callbacks.aliasing_monitor import AliasingMonitor
from robustrain.callbacks.gradient_alignment_monitor import GradientAlignmentMonitor
from robustrain.callbacks.masking_gap_monitor import MaskingGapMonitor
from robustrain.callbacks.pgd_early_stopping import PGDEarlyStopping
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.callbacks.run_summary import RunSummary
from robustrain.callbacks.signal_monitor import ProbeSignalMonitor, SignalMonitor

__all__ = [
    "AbnormalExamplesMonitor",
    "AliasingMonitor",
    "GradientAlignmentMonitor",
    "MaskingGapMonitor",
    "PGDEarlyStopping",
    "ProbeSignalMonitor",
    "RollbackEarlyStopping",
    "RunSummary",
    "SignalMonitor",
]
