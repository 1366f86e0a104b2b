"""robustrain.runs.resume: the run signature, the changes a resume refuses and the ones that pass."""

from robustrain.runs.resume import (
    ALLOW_FLAG,
    allowed_note,
    checkpoint_signature,
    differences,
    plain,
    refusal,
    run_signature,
)

NET = {"class_path": "robustrain.models.SmallCNN", "init_args": {"channels": (16, 32), "hidden": 100}}


def signature(**changes) -> dict:
    model_args = {"eps": 0.3, "lr": 0.005, "net": NET, "eval_fgsm": True, "masking_margin": 0.3}
    model_args.update(changes.pop("model", {}))
    data_args = {"batch_size": 100, "num_workers": 0, "inject_beta": 0.0}
    data_args.update(changes.pop("data", {}))
    trainer = {"max_epochs": 30, "max_steps": -1, "precision": "32-true", "processes": 1, "log_every_n_steps": 10}
    trainer.update(changes.pop("trainer", {}))
    callbacks = changes.pop("callbacks", [("aliasing", {"aliasing/threshold": 0.33, "aliasing/window": 3})])
    return run_signature(
        model=(changes.pop("model_class", "robustrain.training.FGSMTraining"), model_args),
        data=("robustrain.data.MNIST5k", data_args),
        trainer=trainer,
        callbacks=callbacks,
        seed=changes.pop("seed", 0),
    )


def test_the_signature_names_each_setting_by_its_config_key():
    sig = signature()
    assert sig["model.class_path"] == "FGSMTraining" and sig["model.init_args.eps"] == 0.3
    assert sig["model.init_args.net.class_path"] == "SmallCNN"
    assert sig["model.init_args.net.init_args.channels"] == [16, 32]  # tuples as lists, as a checkpoint holds them
    assert sig["trainer.max_epochs"] == 30 and sig["aliasing/threshold"] == 0.33
    assert sig["callbacks"] == ["aliasing"] and sig["seed_everything"] == 0


def test_harmless_settings_are_not_part_of_it():
    sig = signature()
    assert "model.init_args.eval_fgsm" not in sig and "model.init_args.masking_margin" not in sig
    assert "data.init_args.num_workers" not in sig and "trainer.log_every_n_steps" not in sig
    harmless = signature(
        model={"eval_fgsm": False, "channels_last": True, "compile": {"mode": "max-autotune"}},
        data={"num_workers": 4, "pin_memory": True},
        trainer={"log_every_n_steps": 1},
    )
    assert differences(sig, harmless) == []


def test_every_change_that_mixes_runs_is_found_old_to_new():
    old = signature()
    new = signature(
        model_class="robustrain.training.StandardTraining",
        model={"lr": 0.01, "net": {**NET, "init_args": {"channels": (8, 16), "hidden": 100}}},
        data={"inject_beta": 0.1},
        trainer={"max_epochs": 40},
        callbacks=[("aliasing", {"aliasing/threshold": 0.5, "aliasing/window": 3}), ("pgd_es", {"pgd_es/steps": 5})],
        seed=5,
    )
    assert differences(old, new) == [
        ("model.class_path", "FGSMTraining", "StandardTraining"),
        ("model.init_args.lr", 0.005, 0.01),
        ("model.init_args.net.init_args.channels", [16, 32], [8, 16]),
        ("data.init_args.inject_beta", 0.0, 0.1),
        ("trainer.max_epochs", 30, 40),
        ("aliasing/threshold", 0.33, 0.5),
        ("callbacks", ["aliasing"], ["aliasing", "pgd_es"]),
        ("seed_everything", 0, 5),
    ]


def test_a_setting_only_one_side_knows_is_no_difference_and_ints_equal_floats():
    old = {"model.init_args.lr": 1, "model.init_args.new_arg": True}
    assert differences(old, {"model.init_args.lr": 1.0}) == []
    assert differences({"x": True}, {"x": 1}) == [("x", True, 1)]  # a bool is not a number


def test_a_checkpoint_without_a_signature_gives_its_module_and_seed():
    checkpoint = {
        "hyper_parameters": {"_class_path": "robustrain.training.FGSMTraining", "eps": 0.3, "eval_fgsm": True},
        "robustrain": {"run_seed": 7},
    }
    assert checkpoint_signature(checkpoint) == {
        "model.class_path": "FGSMTraining",
        "model.init_args.eps": 0.3,
        "seed_everything": 7,
    }
    assert checkpoint_signature({"robustrain": {"signature": {"a": 1}}}) == {"a": 1}
    assert checkpoint_signature({}) == {}


def test_the_refusal_names_each_change_why_and_the_flag():
    changes = [("trainer.max_epochs", 4, 6), ("pgd_es/steps", 5, 3)]
    line = refusal("runs/x/last.ckpt", changes)
    assert "runs/x/last.ckpt would mix two runs" in line and "\n" not in line
    assert "trainer.max_epochs 4 -> 6 (the lr schedule spans max_epochs); pgd_es/steps 5 -> 3." in line
    assert f"--{ALLOW_FLAG} true" in line
    note = allowed_note(changes)
    assert "the lr schedule is re-sized" in note and "histories continue under their new settings" in note


def test_plain_turns_configs_into_comparable_data():
    class Namespace:  # what jsonargparse hands over
        def as_dict(self):
            return {"class_path": "a.b.C", "init_args": {"k": (1, 2)}, "__path__": "x"}

    assert plain(Namespace()) == {"class_path": "C", "init_args": {"k": [1, 2]}}
