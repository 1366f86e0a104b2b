"""N-FGSM training and the regularizers (GradAlign, ELLE-A) inside Lightning: they train, log their penalty, keep
ELLE-A's weight in checkpoints (a resumed run equals the uninterrupted one), and run under DDP and bf16."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch

from robustrain.models import SmallCNN
from robustrain.training import ELLE, FGSMTraining, GradAlign, NFGSMTraining


def _module(cls=FGSMTraining, regularizer=None, **kwargs):
    net = SmallCNN(num_classes=4, image_size=8, channels=(4, 8), hidden=16)
    args = {"eps": 0.1, "alpha": 0.1, "optimizer": "sgd", "lr": 0.05, "lr_schedule": "constant", "eval_size": 0}
    if cls is FGSMTraining:
        args["init"] = "zero"
    return cls(net=net, regularizer=regularizer, **(args | kwargs))


def _net_state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "make",
    [
        lambda: _module(NFGSMTraining),
        lambda: _module(regularizer=GradAlign(weight=0.5)),
        lambda: _module(NFGSMTraining, regularizer=ELLE(weight=5.0, adaptive=True)),
    ],
    ids=["nfgsm", "fgsm+gradalign", "nfgsm+elle_a"],
)
def test_single_step_methods_train_and_log_their_penalty(make, tmp_path):
    from _stopping_fixtures import RandomDigits, tiny_trainer

    module = make()
    before = _net_state(module)
    trainer = tiny_trainer(tmp_path, [], max_epochs=2)
    trainer.fit(module, datamodule=RandomDigits())
    assert any(not torch.equal(before[k], v) for k, v in module.state_dict().items() if k.startswith("net."))
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    if module.regularizer is not None:
        assert torch.isfinite(metrics["train/penalty"]) and metrics["train/penalty"] >= 0
        assert "train/penalty_weight" in metrics


def test_a_regularized_module_charts_its_penalty_and_weight():
    charts = _module(regularizer=ELLE(weight=5.0, adaptive=True)).tensorboard_charts()["robustness"]
    assert ["Multiline", ["^train/penalty$"]] in charts.values()
    assert ["Multiline", ["^train/penalty_weight$"]] in charts.values()
    assert ["Multiline", ["^train/penalty$"]] not in _module().tensorboard_charts()["robustness"].values()


def test_nfgsm_defaults_are_the_papers():
    module = _module(NFGSMTraining, alpha=None, eps=8 / 255)
    assert (module.alpha, module.noise, module.clip) == (8 / 255, 2.0, None)


def test_a_resumed_elle_a_run_equals_the_uninterrupted_one(tmp_path):
    from _stopping_fixtures import RandomDigits, tiny_trainer

    def module():
        return _module(NFGSMTraining, regularizer=ELLE(weight=5.0, adaptive=True, decay=0.5, sensitivity=0.5))

    L.seed_everything(0)
    full = module()
    tiny_trainer(tmp_path / "full", [], max_epochs=4).fit(full, datamodule=RandomDigits())

    L.seed_everything(0)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    first = module()
    tiny_trainer(tmp_path / "a", [ckpt], max_epochs=2, enable_checkpointing=True).fit(first, datamodule=RandomDigits())
    L.seed_everything(0)
    resumed = module()
    trainer = tiny_trainer(tmp_path / "b", [], max_epochs=4)
    trainer.fit(resumed, datamodule=RandomDigits(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert full.regularizer.adaptive_state[1] == 16  # 4 epochs x 4 steps of ELLE-A statistics
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


DDP_SCRIPT = """
import json, sys
import lightning as L
import torch
sys.path.insert(0, {tests!r})
from _stopping_fixtures import RandomDigits
from robustrain.models import SmallCNN
from robustrain.training import ELLE, FGSMTraining, GradAlign, NFGSMTraining

L.seed_everything(0)
out = {{}}
for name, cls, reg in (("gradalign", FGSMTraining, GradAlign(weight=0.5)),
                       ("elle_a", NFGSMTraining, ELLE(weight=5.0, adaptive=True, decay=0.5, sensitivity=0.5))):
    net = SmallCNN(num_classes=4, image_size=8, channels=(4, 8), hidden=16)
    module = cls(net=net, eps=0.1, alpha=0.1, regularizer=reg, optimizer="sgd", lr=0.05, lr_schedule="constant",
                 eval_size=0)
    # no buffer broadcast: ELLE-A's state agrees across ranks only through the averaged error, not through DDP
    # copying rank 0's buffers before each forward
    strategy = L.pytorch.strategies.DDPStrategy(broadcast_buffers=False)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy=strategy, precision="bf16-mixed",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, inference_mode=False, default_root_dir={root!r})
    trainer.fit(module, datamodule=RandomDigits())
    out[name] = dict(weights=[round(float(v), 6) for v in module.net.fc2.weight.flatten()],
                     state=[float(v) for v in reg.adaptive_state] if name == "elle_a" else None,
                     penalty=float(trainer.callback_metrics["train/penalty"]),
                     local=float(module.regularizer.adaptive_state[2]) if name == "elle_a" else None)
with open({root!r} + f"/rank{{trainer.global_rank}}.json", "w") as f:
    json.dump(out, f)
"""


def test_regularizers_under_ddp_and_bf16_keep_every_rank_alike(tmp_path):
    tests = str(Path(__file__).parent)
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(root=str(tmp_path), tests=tests)))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for name in ("gradalign", "elle_a"):
        assert ranks[0][name]["weights"] == ranks[1][name]["weights"]
        assert ranks[0][name]["penalty"] >= 0
    assert ranks[0]["elle_a"]["state"] == ranks[1]["elle_a"]["state"]
    assert ranks[0]["elle_a"]["state"][1] == 4  # 2 epochs x 2 steps per rank (64 images / 2 ranks / 16)


def test_a_non_regularizer_is_refused_by_name():
    with pytest.raises(ValueError, match="regularizer"):
        _module(regularizer=torch.nn.Linear(2, 2))
