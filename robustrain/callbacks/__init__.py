"""Lightning callbacks: aliasing monitoring / early stopping, Wong et al.'s PGD early stopping, the run's summary."""

from robustrain.callbacks.aliasing_monitor import AliasingMonitor
from robustrain.callbacks.pgd_early_stopping import PGDEarlyStopping
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping
from robustrain.callbacks.run_summary import RunSummary

__all__ = ["AliasingMonitor", "PGDEarlyStopping", "RollbackEarlyStopping", "RunSummary"]
