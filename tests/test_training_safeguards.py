"""robustrain.training.safeguards: the non-finite guard names the tensor."""

import math

import torch

from robustrain.training.safeguards import first_non_finite


def test_first_non_finite_names_the_tensor():
    assert first_non_finite([("a", torch.ones(2)), ("b", None), ("c", torch.tensor([1, 2]))]) is None
    assert first_non_finite([("a", torch.ones(2)), ("b", torch.tensor([0.0, math.inf]))]) == "b"
    assert first_non_finite([("a", torch.tensor([math.nan]))]) == "a"


def test_testing_non_finite_weights_raises_naming_the_tensor(tiny_cnn):
    import pytest

    from robustrain.core.errors import NonFiniteError
    from robustrain.training import StandardTraining

    module = StandardTraining(net=tiny_cnn)
    module.on_test_start()  # finite: nothing to say
    with torch.no_grad():
        module.net.conv1.weight[0, 0, 0, 0] = math.nan
    with pytest.raises(NonFiniteError, match="net.conv1.weight is not finite: testing these weights"):
        module.on_test_start()


def test_checkpoints_record_the_seed_the_signature_and_the_allowed_changes(tiny_cnn):
    from robustrain.training import StandardTraining

    module = StandardTraining(net=tiny_cnn)
    module._run_seed, module.run_signature = 3, {"trainer.max_epochs": 4}
    module.settings_changes = [{"epoch": 2, "changes": [["trainer.max_epochs", 2, 4]]}]
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["robustrain"] == {
        "run_seed": 3,
        "signature": {"trainer.max_epochs": 4},
        "settings_changes": [{"epoch": 2, "changes": [["trainer.max_epochs", 2, 4]]}],
    }
    resumed = StandardTraining(net=tiny_cnn)
    resumed._seed_override = 5  # a resume allowed to change the seed
    resumed.settings_changes = [{"epoch": 4, "changes": [["seed_everything", 3, 5]]}]
    resumed.on_load_checkpoint(checkpoint)
    assert resumed._run_seed == 5 and [c["epoch"] for c in resumed.settings_changes] == [2, 4]
