"""configs/co_demo_mnist5k.yaml, the main job: FGSM training on digits with an injected feature collapses, and the
gradient-alignment stop ends it and hands back the model from before the collapse."""

import pytest
from conftest import REPO


@pytest.mark.slow  # ~1 minute on 2 CPU cores: the whole demo, real digits
def test_the_demo_collapses_and_the_gradient_alignment_stop_hands_back_the_epoch_before(in_tmp):
    from robustrain.callbacks import GradientAlignmentMonitor, MaskingGapMonitor
    from robustrain.cli import main

    config = str(REPO / "configs/co_demo_mnist5k.yaml")
    cli = main(["fit", "--config", config, "--trainer.enable_progress_bar", "false"])
    stop = next(cb for cb in cli.trainer.callbacks if isinstance(cb, GradientAlignmentMonitor))
    assert stop.stopped_epoch == 5 and stop.restored_epoch == 4
    gap = next(cb for cb in cli.trainer.callbacks if isinstance(cb, MaskingGapMonitor))
    collapsed = gap.history[-1]
    assert collapsed["epoch"] == 5 and collapsed["acc_pgd"] < 0.1 and collapsed["acc_fgsm"] > 0.9  # the collapse
    assert max(r["acc_pgd"] for r in gap.history) > 0.4  # robust before it
    assert (in_tmp / "runs/co_demo_mnist5k/version_0/grad_align_stop.ckpt").is_file()


def test_the_demo_stops_on_gradient_alignment_only(in_tmp):
    from robustrain.callbacks import RollbackEarlyStopping
    from robustrain.cli import main

    cli = main(["--config", str(REPO / "configs/co_demo_mnist5k.yaml"), "--trainer.logger", "false"], run=False)
    stops = [cb for cb in cli.trainer.callbacks if isinstance(cb, RollbackEarlyStopping)]
    assert [type(cb).__name__ for cb in stops if not cb.monitor_only] == ["GradientAlignmentMonitor"]
    assert len(stops) == 5 and cli.datamodule.inject_beta == 0.1 and cli.model.eval_eps == 0.2
