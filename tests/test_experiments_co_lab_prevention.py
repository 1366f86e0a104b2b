"""experiments.co_lab.prevention: plans stack method overlays on settings; a tiny study trains, evaluates, reports."""

import json

import pytest
import torch

from experiments.co_lab import prevention
from experiments.co_lab import runs as lab_runs


def test_every_plan_names_existing_configs_and_distinct_runs():
    jobs = prevention.plan_jobs(list(prevention.PLANS))
    folders = [job.folder(prevention.Path("out")) for job in jobs]
    assert len(set(folders)) == len(folders)
    for job in jobs:
        assert all((lab_runs.REPO / config).is_file() for config in job.configs)
        setting, _, method = job.setting.partition("@")
        assert method in prevention.METHODS and setting
        assert (len(job.configs) == 1) == (method == "fgsm")  # FGSM is the setting itself
    assert {job.seed for job in jobs if "@" in job.setting} & set(prevention.TUNING_SEEDS)
    report_seeds = {job.seed for job in jobs if not prevention.is_tuning_seed(job.seed)}
    assert report_seeds <= set(prevention.REPORT_SEEDS) | set(prevention.HANDBACK_SEEDS) | set(prevention.CONFIRM_SEEDS)
    tuning = set(prevention.TUNING_SEEDS) | set(prevention.STOP_TUNING_SEEDS)
    later = set(prevention.HANDBACK_SEEDS) | set(prevention.CONFIRM_SEEDS)  # trained after a choice, for its report
    assert not later & (set(prevention.REPORT_SEEDS) | tuning) and not set(prevention.HANDBACK_SEEDS) & set(
        prevention.CONFIRM_SEEDS
    )
    assert all(prevention.is_tuning_seed(job.seed) for job in prevention.plan_jobs(["stop_tuning"]))


def test_an_unknown_plan_is_refused_with_the_plans_there_are():
    with pytest.raises(ValueError, match=r"unknown plan\(s\) \['resnet_other'\]; choose from \[.*'resnet_others'"):
        prevention.plan_jobs(["resnet", "resnet_other"])


def test_a_tiny_study_trains_evaluates_and_reports(tmp_path, monkeypatch):
    out, docs = tmp_path / "out", tmp_path / "docs"
    tiny = ("trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    arms = [
        prevention.Arm("smallcnn_injected", "fgsm", (20,), tiny),
        prevention.Arm("smallcnn_injected", "nfgsm", (20, 100), tiny),
    ]
    jobs = [job for arm in arms for job in arm.jobs()]
    # a run that fails (a config value refused at construction) is recorded, and the others go on
    jobs += prevention.Arm("smallcnn_injected", "flc", (21,), (*tiny, "model.init_args.eps=7")).jobs()
    lab_runs.train(jobs, out, parallel=2, keep_going=True)
    prevention.evaluate(out, images=["8"], autoattack_images=["4"], parallel=2)
    result = prevention.report(out, docs, "the command", ["8"], ["4"])
    rows = {(r["setting"], r["method"]): r for r in result["summary"]}
    assert rows[("smallcnn_injected", "nfgsm")]["runs"] == 1  # the report seed; the tuning seed is reported apart
    assert result["tuning_summary"][0]["seeds"] == [100]
    assert rows[("smallcnn_injected", "flc")]["failed"] == 1
    runs = {r["run"]: r for r in result["runs"]}
    fgsm = runs["smallcnn_injected@fgsm/seed20"]
    assert len(fgsm["val"]["acc_pgd"]) == 2 and fgsm["half"] == "report"
    assert set(fgsm["test_final"]) == {"clean", "pgd_50x10", "autoattack"}
    assert runs["smallcnn_injected@nfgsm/seed100"]["half"] == "tune"
    assert "aliasing" in fgsm["would_stop"]
    text = (docs / "prevention.md").read_text()
    assert "| smallcnn_injected | N-FGSM | 1 |" in text and "the command" in text
    assert "PGD-50-10 on the first 8, AutoAttack on the first 4 test images" in text
    assert json.loads((docs / "prevention.json").read_text())["command"] == "the command"
    # the image counts are per network: a named network's count wins over the bare default
    asked = {}
    monkeypatch.setattr(prevention.test_eval, "evaluate_epochs", lambda *args: asked.update(counts=args[3:]))
    threads = torch.get_num_threads()
    fgsm_folder = out / "runs" / "smallcnn_injected@fgsm" / "seed20"
    prevention._evaluate_run(fgsm_folder, ["8", "SmallCNN=3"], ["5", "PreActResNet18=1"])
    torch.set_num_threads(threads)
    assert asked["counts"] == (3, 5)


def test_a_model_far_stronger_against_pgd_than_autoattack_is_masked():
    assert prevention.is_masked({"pgd_50x10": 0.95, "autoattack": 0.05})
    assert not prevention.is_masked({"pgd_50x10": 0.45, "autoattack": 0.40})
    assert not prevention.is_masked({"pgd_50x10": 0.45})


def test_unstable_training_gets_its_own_column_and_is_not_a_collapse():
    def record(seed: int, kind: str) -> dict:
        result = {"clean": 0.9, "pgd_50x10": 0.5, "autoattack": 0.45}
        return {"setting": "s", "method": "fgsm", "seed": seed, "class": kind, "would_stop": {"pgd_es": None},
                "test_final": result, "test_best": result}  # fmt: skip

    rows = prevention.summarize([record(20, "catastrophic"), record(21, "unstable"), record(22, "healthy")])
    assert (rows[0]["catastrophic"], rows[0]["unstable"], rows[0]["healthy"], rows[0]["calm_runs"]) == (1, 1, 1, 1)
    text = prevention.markdown(rows, [], "cmd", "250 images")
    assert (
        "| never robust | unstable | failed |" in text
        and "| s | FGSM (zero start) | 3 | 1 | 0 | 1 | 0 | 1 | 0 |" in text
    )
