"""configs/co_stop_mnist5k.yaml: the stop the CO lab recommends (PGD-ES on a fixed probe, a fall of 0.3 from the best
of 5 checks lasting 2, best_probe), on the main job's run."""

import pytest
from conftest import REPO

from experiments.co_lab import handback_scores
from robustrain.stopping import read_history_csv

CONFIG = str(REPO / "configs/co_stop_mnist5k.yaml")


def test_the_recommended_stop_is_the_only_stop_with_its_patience_and_hand_back(in_tmp):
    from robustrain.callbacks import PGDEarlyStopping, RollbackEarlyStopping
    from robustrain.cli import main

    cli = main(["--config", CONFIG, "--trainer.logger", "false"], run=False)
    stops = [cb for cb in cli.trainer.callbacks if isinstance(cb, RollbackEarlyStopping)]
    assert len(stops) == 1 and isinstance(stops[0], PGDEarlyStopping) and not stops[0].monitor_only
    stop = stops[0]
    assert (stop.source, stop.rule.patience, stop.hand_back, stop.hand_back_window) == ("probe", 2, "best_probe", 5)
    rule = stop.rule
    assert (rule.threshold, rule.window, rule.statistic) == (0.3, 5, "best")
    assert (rule.direction, rule.scale) == ("fall", "absolute")
    assert rule == handback_scores.chosen_probe_rule()  # the rule the hand-back study chose on its tuning runs
    assert cli.datamodule.inject_beta == 0.1 and cli.model.eval_eps == 0.2  # the main job's run


def test_a_short_run_records_every_check_with_its_pending_state(in_tmp):
    from robustrain.cli import main

    args = ["fit", "--config", CONFIG, "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "2"]
    main([*args, "--trainer.limit_train_batches", "4", "--model.init_args.eval_size", "50"])
    rows = read_history_csv(in_tmp / "runs/co_stop_mnist5k/version_0/pgd_es_history.csv")
    assert [r["epoch"] for r in rows] == [0, 1] and all(r["pending"] is False for r in rows)
    assert all(0.0 <= r["value"] <= 1.0 and r["hand_back_score"] == r["value"] for r in rows)  # one measurement


@pytest.mark.slow  # ~1 minute on 2 CPU cores: the main job's run with the recommended stop
def test_the_recommended_stop_waits_for_the_collapse_to_last_and_hands_back_a_robust_model(in_tmp):
    from robustrain.callbacks import PGDEarlyStopping
    from robustrain.cli import main

    cli = main(["fit", "--config", CONFIG, "--trainer.enable_progress_bar", "false"])
    stop = next(cb for cb in cli.trainer.callbacks if isinstance(cb, PGDEarlyStopping))
    rows = read_history_csv(in_tmp / "runs/co_stop_mnist5k/version_0/pgd_es_history.csv")
    pending = [r["epoch"] for r in rows if r["pending"]]
    assert pending and stop.stopped_epoch == pending[-1] + 1  # the collapse, then the check that confirms it
    assert stop.restored_epoch < pending[0]  # a model from before the fall
    assert (in_tmp / "runs/co_stop_mnist5k/version_0/pgd_es_stop.ckpt").is_file()
