"""A quiet console: the few Lightning and torch notices known to be irrelevant to robustrain's runs, filtered narrowly.

Each filter names one message (its exact opening words) and the module that emits it, nothing broader; every other
warning and log line still shows, and `--debug` (or ROBUSTRAIN_DEBUG=1) installs none of them. Filtered:
- Lightning's two advertisements, logged at INFO through its rank-zero logger: "💡 Tip: ... litlogger" (the logger
  connector) and "💡 Tip: ... litmodels" (the callback connector).
- torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated", raised at a line of Lightning's own
  `lightning/pytorch/utilities/_pytree.py` on every run (Lightning's to fix, not the user's).
- When `test` / `validate` / `predict` load a checkpoint's weights only: Lightning's "Be aware that when using
  `ckpt_path`, callbacks used to create the checkpoint need to be provided ..." (the training callbacks, e.g. the
  early stops, have no business in an evaluation) and ModelCheckpoint's "The dirpath has changed from ..." (the
  evaluation writes no checkpoints). `fit --ckpt_path` keeps both: a resumed run that lost a callback must hear it.
"""

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

# Lightning's rank_zero_info logs through these (lightning.pytorch re-points the shared one to its own name).
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


@dataclass(frozen=True)
class Notice:
    """One filtered message: its opening words, the module that emits it, and (for warnings) its category."""

    start: str
    module: str
    category: type[Warning] | None = None  # None: a log record, not a warning


LOG_NOTICES = (
    Notice(
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
        "lightning.pytorch.trainer.connectors.logger_connector.logger_connector",
    ),
    Notice(
        "💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]",
        "lightning.pytorch.trainer.connectors.callback_connector",
    ),
)
WARNING_NOTICES = (
    Notice(
        "`isinstance(treespec, LeafSpec)` is deprecated",
        "lightning.pytorch.utilities._pytree",
        FutureWarning,
    ),
)
WEIGHTS_ONLY_NOTICES = (  # only when test / validate / predict load a checkpoint
    Notice(
        "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided",
        "lightning.pytorch.trainer.call",
        UserWarning,
    ),
    Notice("The dirpath has changed from ", "lightning.pytorch.callbacks.model_checkpoint", UserWarning),
)


class _DropNotices(logging.Filter):
    """Drops the log records of LOG_NOTICES: same opening words, emitted from the named module's file."""

    def __init__(self, notices: tuple[Notice, ...]) -> None:
        super().__init__()
        self.notices = notices

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        path = record.pathname.replace("\\", "/")
        return not any(
            message.startswith(n.start) and path.endswith(n.module.replace(".", "/") + ".py") for n in self.notices
        )


def notices_for(subcommand: str | None) -> tuple[tuple[Notice, ...], tuple[Notice, ...]]:
    """(log notices, warning notices) filtered for a subcommand."""
    warning_notices = WARNING_NOTICES + (WEIGHTS_ONLY_NOTICES if subcommand in ("test", "validate", "predict") else ())
    return LOG_NOTICES, warning_notices


@contextlib.contextmanager
def quiet_console(subcommand: str | None, enabled: bool = True) -> Iterator[None]:
    """Filter the notices of `notices_for(subcommand)` while the block runs (nothing when not `enabled`); the
    warning filters and logging filters in force before are restored on exit."""
    if not enabled:
        yield
        return
    log_notices, warning_notices = notices_for(subcommand)
    drop = _DropNotices(log_notices)
    loggers = [logging.getLogger(name) for name in RANK_ZERO_LOGGERS]
    with warnings.catch_warnings():
        for notice in warning_notices:
            warnings.filterwarnings(
                "ignore",
                message=re.escape(notice.start),
                category=notice.category,
                module=re.escape(notice.module) + r"\Z",
            )
        for logger in loggers:
            logger.addFilter(drop)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(drop)
