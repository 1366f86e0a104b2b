"""The robustrain command line: a LightningCLI over every training module and datamodule (fit/validate/test/predict)."""

from pathlib import Path

import torch
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

    def _parse_ckpt_path(self) -> None:
        """With `--ckpt_path`, take the training module and network from the checkpoint, the evaluation from the user.

        LightningCLI applies every hyperparameter stored in the checkpoint over the config and the command line, so
        `test --config eval.yaml --model.init_args.eval_steps 100 --ckpt_path ...` would silently evaluate with the
        checkpoint's training-time `eval_*` settings. We keep the checkpoint's class, network and training arguments
        (they define the weights) and let the config and command line decide every `eval_*` argument.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        hparams.pop("_instantiator", None)
        if "_class_path" not in hparams:  # not written by this CLI: keep Lightning's behaviour
            return super()._parse_ckpt_path()
        class_path = hparams.pop("_class_path")
        init_args = {k: v for k, v in hparams.items() if not k.startswith("eval_")}
        model = {"class_path": class_path, "init_args": init_args}
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)


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
        # omegaconf+: `${...}` interpolation over the merged config, so configs/base/*.yaml can name the checkpoint
        # folders after the logger's name.
        parser_kwargs={"parser_mode": "omegaconf+"},
    )


if __name__ == "__main__":
    main()
