"""robustrain.callbacks.rollback_early_stopping: state keys that survive changed settings, and the settings in the
state, so a resume finds its history and can compare the rule it was recorded under."""

import pytest

from robustrain.callbacks import AliasingMonitor, PGDEarlyStopping


def test_the_state_key_is_the_callbacks_identity_not_its_settings():
    assert PGDEarlyStopping(steps=5).state_key == PGDEarlyStopping(steps=3, eps=0.1).state_key == "PGDEarlyStopping"
    assert AliasingMonitor(monitor="mean").state_key == AliasingMonitor(threshold=0.5, window=5).state_key
    assert AliasingMonitor().state_key == "AliasingMonitor"
    assert AliasingMonitor(name="aliasing_bn_train").state_key == "AliasingMonitor{'name': 'aliasing_bn_train'}"


@pytest.mark.parametrize(
    ("callback", "legacy_keys", "found"),
    [
        (PGDEarlyStopping(), ["PGDEarlyStopping{'eps': 0.3, 'steps': 5, 'source': 'first_batch'}"], 0),
        (
            AliasingMonitor(),
            [
                "AliasingMonitor{'name': 'aliasing_bn_train', 'layers': None, 'groups': [], 'monitor': 'mean'}",
                "AliasingMonitor{'layers': None, 'groups': [], 'monitor': 'mean'}",
            ],
            1,
        ),
        (
            AliasingMonitor(name="aliasing_bn_train"),
            [
                "AliasingMonitor{'layers': None, 'groups': [], 'monitor': 'mean'}",
                "AliasingMonitor{'name': 'aliasing_bn_train', 'layers': None, 'groups': [], 'monitor': 'mean'}",
            ],
            1,
        ),
    ],
    ids=["pgd-es", "aliasing-default-name", "aliasing-named"],
)
def test_checkpoints_written_when_keys_held_settings_still_resume(callback, legacy_keys, found):
    states = {key: {"history": [{"epoch": i, "kind": "probe"}]} for i, key in enumerate(legacy_keys)}
    checkpoint = {"callbacks": dict(states)}
    callback.on_load_checkpoint(None, None, checkpoint)
    assert checkpoint["callbacks"][callback.state_key] is states[legacy_keys[found]]


def test_the_state_records_the_settings_and_a_changed_rule_is_warned_about_on_load():
    recorded = AliasingMonitor(threshold=0.33).state_dict()
    assert recorded["settings"]["threshold"] == 0.33 and recorded["settings"]["window"] == 3
    resumed = AliasingMonitor(threshold=0.5)
    with pytest.warns(UserWarning, match=r"resumes with changed settings \(threshold 0.33 -> 0.5\)"):
        resumed.load_state_dict({**recorded, "history": [{"epoch": 0, "kind": "probe", "value": 1.0}]})
    assert len(resumed.history) == 1  # the history is kept, never dropped
