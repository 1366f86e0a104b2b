"""Lightning callbacks: aliasing monitoring / early stopping and Wong et al.'s PGD early stopping."""

from robustrain.callbacks.aliasing_monitor import AliasingMonitor
from robustrain.callbacks.pgd_early_stopping import PGDEarlyStopping
from robustrain.callbacks.rollback_early_stopping import RollbackEarlyStopping

__all__ = ["AliasingMonitor", "PGDEarlyStopping", "RollbackEarlyStopping"]
