"""robustrain.callbacks.rollback_early_stopping: which model a stop hands back ("last_check", "best_probe",
"best_val"), in real runs, and the same choice after a resume."""

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from _stopping_fixtures import RandomDigits, WeightsPerEpoch, assert_same_weights, tiny_module, tiny_trainer

from robustrain.callbacks import PGDEarlyStopping
from robustrain.callbacks.rollback_early_stopping import choose_hand_back
from robustrain.stopping import read_history_csv

NAN = math.nan


@pytest.mark.parametrize(
    ("candidates", "policy", "chosen"),
    [
        ([(-1, NAN), (0, 0.2), (1, 0.5), (2, 0.3)], "last_check", 2),
        ([(-1, NAN), (0, 0.2), (1, 0.5), (2, 0.3)], "best_probe", 1),
        ([(0, 0.5), (1, 0.5), (2, 0.1)], "best_val", 1),  # equal scores: the newer
        ([(-1, NAN), (0, NAN)], "best_probe", 0),  # no score at all: the newest
        ([(-1, NAN), (0, 0.0)], "best_val", 0),  # a finite score beats none
        ([], "best_probe", None),
    ],
)
def test_the_choice_among_the_retained_snapshots(candidates, policy, chosen) -> None:
    assert choose_hand_back(candidates, policy) == chosen


def test_an_unknown_policy_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"hand_back.*'best_test'.*last_check"):
        PGDEarlyStopping(hand_back="best_test")
    with pytest.raises(ValueError, match="hand_back_window"):
        PGDEarlyStopping(hand_back="best_probe", hand_back_window=0)


class ScriptedProbe:
    """Stands in for the PGD probe: a scripted score per epoch, and a count of the measurements."""

    SCORES = [0.10, 0.50, 0.90, 0.60, 0.55, 0.0]

    def __init__(self) -> None:
        self.images, self.measured = None, []

    def setup(self, trainer, pl_module, who) -> None:
        self.images = "scripted"

    def score(self, trainer, pl_module) -> float:
        self.measured.append(trainer.current_epoch)
        return self.SCORES[trainer.current_epoch]


class ScriptedStop(PGDEarlyStopping):
    """A PGD stop whose check is scripted: it falls at epoch 5 (training itself is real)."""

    ACCURACIES = [0.5, 0.5, 0.5, 0.5, 0.5, 0.0]

    def __init__(self, **kwargs) -> None:
        super().__init__(eps=0.1, alpha=0.05, **kwargs)
        if self._probe is not None:
            self._probe = ScriptedProbe()

    def measure_epoch(self, trainer, pl_module) -> dict[str, float]:
        return {"acc": self.ACCURACIES[trainer.current_epoch]}


def _fit(tmp_path, stop, max_epochs=6, ckpt_path=None, checkpoint=None):
    weights = WeightsPerEpoch()
    logger = L.pytorch.loggers.TensorBoardLogger(str(tmp_path), name="run", version=0)
    callbacks = [weights, stop] + ([checkpoint] if checkpoint else [])
    trainer = tiny_trainer(
        tmp_path, callbacks, max_epochs=max_epochs, logger=logger, enable_checkpointing=checkpoint is not None
    )
    torch.manual_seed(0)
    module = tiny_module(lr=0.05)
    trainer.fit(module, datamodule=RandomDigits(), ckpt_path=ckpt_path)
    return trainer, module, weights


@pytest.mark.parametrize(("window", "chosen"), [(5, 2), (2, 3), (1, 4)])
def test_best_probe_hands_back_the_best_scored_of_the_last_checks(tmp_path, window, chosen) -> None:
    L.seed_everything(0)
    stop = ScriptedStop(hand_back="best_probe", hand_back_window=window)
    trainer, module, weights = _fit(tmp_path, stop)
    assert stop.stopped_epoch == 5 and stop.restored_epoch == chosen
    assert_same_weights(module.state_dict(), weights.states[chosen])
    saved = torch.load(Path(trainer.log_dir) / "pgd_es_stop.ckpt", map_location="cpu", weights_only=False)
    assert_same_weights(saved["state_dict"], weights.states[chosen])
    assert stop._probe.measured == [0, 1, 2, 3, 4]  # once per "go on" check, never at the stop
    rows = read_history_csv(Path(trainer.log_dir) / "pgd_es_history.csv")
    assert [r.get("hand_back_score") for r in rows[:5]] == ScriptedProbe.SCORES[:5]
    assert rows[5]["hand_back_epoch"] == chosen  # charted at every check: what a stop there hands back
    files = Path(trainer.log_dir, "pgd_es_handback")
    if window == 1:
        assert not files.exists()
    else:  # the window's snapshots, and the previous window's one epoch longer (the last checkpoint names them)
        kept = {int(path.stem.split("=")[1]) for path in files.glob("*.pt")}
        assert kept == set(range(-1, 5)[-window:]) | set(range(-1, 4)[-window:])


class DippingStop(ScriptedStop):
    """A PGD stop whose check dips at epoch 3, climbs back, and falls for good from epoch 5."""

    ACCURACIES = [0.5, 0.5, 0.5, 0.1, 0.5, 0.1, 0.0]


@pytest.mark.parametrize(("patience", "stopped", "chosen"), [(1, 3, 2), (2, 6, 4)])
def test_patience_waits_out_a_dip_and_hands_back_a_model_from_before_the_fall(
    tmp_path, patience, stopped, chosen
) -> None:
    L.seed_everything(0)
    stop = DippingStop(patience=patience)
    trainer, module, weights = _fit(tmp_path, stop, max_epochs=7)
    assert stop.stopped_epoch == stopped and stop.restored_epoch == chosen
    assert_same_weights(module.state_dict(), weights.states[chosen])
    rows = read_history_csv(Path(trainer.log_dir) / "pgd_es_history.csv")
    assert [r["pending"] for r in rows] == [False, False, False, patience > 1, False, patience > 1, False][
        : stopped + 1
    ]
    assert [c[0] for c in stop.candidates] == [-1, 0, 1, 2, 4][: chosen + 2 if patience == 1 else None]
    assert stop.settings()["patience"] == patience


def test_a_monitor_only_stop_reports_what_its_policy_would_hand_back(tmp_path) -> None:
    L.seed_everything(0)
    stop = ScriptedStop(hand_back="best_probe", hand_back_window=5, monitor_only=True)
    _fit(tmp_path, stop)
    assert stop.outcome()["pgd_es/would_stop_epoch"] == 5
    assert stop.outcome()["pgd_es/would_hand_back_epoch"] == 2
    assert not stop._weights and not Path(tmp_path, "run", "version_0", "pgd_es_handback").exists()


def test_a_resumed_best_probe_stop_chooses_among_the_same_snapshots(tmp_path) -> None:
    L.seed_everything(0)
    full = ScriptedStop(hand_back="best_probe", hand_back_window=5)
    _, full_module, _ = _fit(tmp_path / "full", full)

    L.seed_everything(0)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    _fit(tmp_path / "run", ScriptedStop(hand_back="best_probe", hand_back_window=5), 4, checkpoint=checkpoint)
    resumed = ScriptedStop(hand_back="best_probe", hand_back_window=5)
    _, module, _ = _fit(tmp_path / "run", resumed, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.restored_epoch == full.restored_epoch == 2
    assert_same_weights(module.state_dict(), full_module.state_dict())


def test_best_val_is_refused_when_the_module_does_not_validate_with_pgd(tmp_path) -> None:
    stop = PGDEarlyStopping(eps=0.1, alpha=0.05, hand_back="best_val")
    with pytest.raises(ValueError, match="best_val.*val/acc_pgd"):
        _fit(tmp_path, stop, max_epochs=1)


def test_a_checkpoint_from_before_hand_back_windows_reports_the_check_before_the_stop() -> None:
    history = [
        {"epoch": e, "step": 10 * (e + 1), "kind": "first_batch", "value": v, "should_stop": e == 3, "val_acc_pgd": v}
        for e, v in enumerate([0.3, 0.4, 0.5, 0.1, 0.1])
    ]
    stop = PGDEarlyStopping(monitor_only=True)
    stop.load_state_dict({"history": history, "settings": {"max_drop": 0.2}})  # no "candidates": an older robustrain
    assert [epoch for epoch, _ in stop.candidates] == [-1, 0, 1, 2, 3, 4]
    assert all(math.isnan(score) for _, score in stop.candidates)
    assert stop.decision() == (3.0, 2.0, 0.5)


class ScriptedValidation(ScriptedStop):
    """The scripted stop, with a scripted val/acc_pgd per epoch in place of a PGD validation."""

    VAL = [0.2, 0.7, 0.4, 0.3, 0.6, 0.0]

    def _val_acc_pgd(self, trainer) -> float:
        return self.VAL[trainer.current_epoch]

    def setup(self, trainer, pl_module, stage) -> None:  # the tiny module validates nothing: skip best_val's check
        PGDEarlyStopping._take_eval_settings(self, pl_module)


def test_best_val_hands_back_the_best_validated_of_the_last_checks(tmp_path) -> None:
    L.seed_everything(0)
    stop = ScriptedValidation(hand_back="best_val", hand_back_window=5)
    _, module, weights = _fit(tmp_path, stop)
    assert stop.stopped_epoch == 5 and stop.restored_epoch == 1
    assert_same_weights(module.state_dict(), weights.states[1])
