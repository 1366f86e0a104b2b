"""The command line (`python train.py ...`): `main` parses, checks and runs; `RobustrainCLI` is the LightningCLI
behind it.

- main: the entry point and its exit codes (robustrain.core.errors);
- lightning_cli: RobustrainCLI and AtomicSaveConfig;
- checks: the config and run-folder checks made before anything is built;
- checkpoint_checks: the checks of a `--ckpt_path` checkpoint;
- console: the quiet console (Lightning's tips and irrelevant notices filtered).
"""

from robustrain.cli.lightning_cli import RobustrainCLI
from robustrain.cli.main import main

__all__ = ["RobustrainCLI", "main"]
