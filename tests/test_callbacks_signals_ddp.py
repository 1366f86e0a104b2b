"""robustrain.callbacks: the stops agree across DDP ranks on every value, decision and hand-back."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

DDP_SCRIPT = """
import json, sys
import lightning as L
from robustrain.callbacks import AbnormalExamplesMonitor, GradientAlignmentMonitor, MaskingGapMonitor
from robustrain.data import MNIST5k
from robustrain.models import SmallCNN
from robustrain.training import FGSMTraining

L.seed_everything(0)
monitors = [
    GradientAlignmentMonitor(
        probe_size=20, threshold=0.001, warmup_epochs=0, every_n_train_steps=1, batch_probe_size=4,
        hand_back="best_probe", hand_back_window=3,
    ),
    AbnormalExamplesMonitor(threshold=0.001, every_n_train_steps=1, monitor_only=True),
    MaskingGapMonitor(threshold=0.001, monitor_only=True),
]
module = FGSMTraining(net=SmallCNN(), eps=0.3, alpha=0.3, init="zero", optimizer="adam", lr=5e-3,
                      eval_eps=0.3, eval_alpha=0.1, eval_steps=2, eval_size=20)
trainer = L.Trainer(max_epochs=4, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    inference_mode=False, default_root_dir={root!r}, limit_train_batches=2, limit_val_batches=1,
                    callbacks=monitors)
trainer.fit(module, datamodule=MNIST5k(batch_size=20, eval_batch_size=10))
out = {{m.name: dict(stopped=m.stopped_epoch, restored=m.restored_epoch, candidates=m.candidates,
        history=[{{k: r[k] for k in ("kind", "epoch", "step", "value",
        "should_stop")}} for r in m.history]) for m in monitors}}
out["examples"] = [r["examples"] for r in monitors[1].history if r["kind"] == "epoch"]
with open({root!r} + f"/rank{{trainer.global_rank}}.json", "w") as f:
    json.dump(out, f)
"""


def test_ddp_two_processes_record_the_same_values_and_take_the_same_decisions(tmp_path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(root=str(tmp_path))))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["examples"][0] == 80.0  # 2 steps x 20 images x 2 ranks
    histories = {name: ranks[0][name]["history"] for name in ("grad_align", "abnormal", "masking_gap")}
    assert all(histories.values())
    assert {r["kind"] for r in histories["grad_align"]} == {"probe", "batch"}
    assert ranks[0]["grad_align"]["stopped"] is not None  # its tiny threshold stops it, on both ranks alike
    assert ranks[0]["grad_align"]["restored"] is not None  # and both hand back the same best_probe choice


def _fgsm_module():
    from robustrain.models import SmallCNN
    from robustrain.training import FGSMTraining

    net = SmallCNN(num_classes=4, image_size=8, channels=(4, 8), hidden=16)
    return FGSMTraining(
        net=net, eps=0.1, alpha=0.1, init="zero", optimizer="sgd", lr=0.05, lr_schedule="constant", eval_size=0
    )


def _monitors():
    from robustrain.callbacks import AbnormalExamplesMonitor, GradientAlignmentMonitor

    return [
        GradientAlignmentMonitor(probe_size=16, every_n_train_steps=2, batch_probe_size=4, monitor_only=True),
        AbnormalExamplesMonitor(every_n_train_steps=2, monitor_only=True),
    ]


def test_a_resumed_run_records_the_histories_of_the_uninterrupted_one(tmp_path) -> None:
    import lightning as L
    from _stopping_fixtures import RandomDigits, tiny_trainer

    L.seed_everything(0)
    full = _monitors()
    tiny_trainer(tmp_path / "full", full, max_epochs=4).fit(_fgsm_module(), datamodule=RandomDigits())

    L.seed_everything(0)
    first = _monitors()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    trainer = tiny_trainer(tmp_path / "a", [*first, ckpt], max_epochs=2, enable_checkpointing=True)
    trainer.fit(_fgsm_module(), datamodule=RandomDigits())
    L.seed_everything(0)
    resumed = _monitors()
    trainer = tiny_trainer(tmp_path / "b", resumed, max_epochs=4)
    trainer.fit(_fgsm_module(), datamodule=RandomDigits(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    keys = ("epoch", "step", "kind", "value", "median", "limit", "should_stop")
    for a, b in zip(full, resumed, strict=True):
        assert [[repr(r[k]) for k in keys] for r in b.history] == [[repr(r[k]) for k in keys] for r in a.history]
        assert len(a.history) == 2 * (4 + 2)  # per epoch: two every-2-steps records and one epoch-end record
