"""The robustrain command line: a LightningCLI over every training module and datamodule (fit/validate/test/predict)."""

from lightning.pytorch.cli import LightningCLI

from robustrain.data import ImageDataModule
from robustrain.training import RobustClassifier


class RobustrainCLI(LightningCLI):
    """LightningCLI with robustrain's defaults.

    Models and data are chosen by `class_path` (`--model FGSMTraining`, `--data MNIST5k`, or a YAML `--config`);
    every resolved config is saved next to the run's TensorBoard logs.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"data": {"class_path": "robustrain.data.MNIST5k"}})


def main(args: list[str] | None = None, run: bool = True) -> RobustrainCLI:
    """Entry point of `train.py` and the `robustrain` console script."""
    return RobustrainCLI(
        RobustClassifier,
        ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        # Attacks inside validation / test need autograd, which inference mode forbids.
        trainer_defaults={"inference_mode": False},
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
