"""The speed options (`channels_last`, `compile`, the datamodule's `pin_memory`): checked at construction, and the same
training as without them on 3-channel images: the same losses step by step and the same PGD accuracy, the attacks
calling the compiled network, the aliasing probes still seeing their layers, a resumed optimizer state in the
weights' layout."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

from robustrain.aliasing.layer_categories import layer_categories
from robustrain.aliasing.layers import capture_aliasing, measure_model_aliasing
from robustrain.core.errors import BadInputError
from robustrain.data import MNIST5k, SyntheticImages
from robustrain.models import PreActResNet18, SmallCNN
from robustrain.training import FGSMTraining
from robustrain.training.speed import apply_speed_options, compile_options, match_state_layouts


@pytest.mark.parametrize(
    "value,match",
    [
        ("yes", "compile='yes' is not valid"),
        ({"backend": "inductor", "modes": "default"}, r"\['modes'\] that torch.compile does not take"),
        ({"mode": "fastest"}, "compile.mode='fastest' is not valid: it must be one of"),
        ({"backend": "tensorrt_now"}, "compile.backend='tensorrt_now' is not valid"),
        ({"mode": "max-autotune", "options": {"trace.enabled": True}}, "`mode` or `options`, not both"),
        ({"mode": "max-autotune", "backend": "aot_eager"}, "is an inductor setting; backend 'aot_eager' takes none"),
    ],
)
def test_bad_compile_settings_are_refused_at_construction(value, match):
    with pytest.raises(BadInputError, match=match):
        FGSMTraining(net=SmallCNN(), compile=value)


def test_compile_settings_become_torch_compile_arguments():
    assert compile_options(False) is None
    assert compile_options(True) == {}
    assert compile_options({"mode": "max-autotune", "dynamic": False}) == {"mode": "max-autotune", "dynamic": False}


def test_a_restored_optimizer_state_takes_the_layout_of_its_weights():
    net = SmallCNN(in_channels=3, image_size=32)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.rand(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    saved = {k: v.clone() for k, v in optimizer.state[net.conv1.weight].items()}
    net.to(memory_format=torch.channels_last)  # a run resumed with channels_last: the state is still NCHW
    match_state_layouts(optimizer)
    state = optimizer.state[net.conv1.weight]
    assert state["exp_avg"].is_contiguous(memory_format=torch.channels_last)
    assert state["exp_avg"].stride() == net.conv1.weight.stride() and torch.equal(state["exp_avg"], saved["exp_avg"])
    assert torch.equal(state["step"], saved["step"])  # not shaped as the weight: left alone


def test_in_place_compilation_keeps_parameter_names_and_compiles_once():
    net = PreActResNet18(num_classes=4, in_channels=1, normalization="mnist")
    names = list(net.state_dict())
    apply_speed_options(net, channels_last=True, compile_kwargs={"backend": "eager"})
    first = net._compiled_call_impl
    apply_speed_options(net, channels_last=True, compile_kwargs={"backend": "eager"})
    assert net._compiled_call_impl is first
    assert list(net.state_dict()) == names  # no `_orig_mod.` prefix: checkpoints load into a plain network
    assert net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    PreActResNet18(num_classes=4, in_channels=1, normalization="mnist").load_state_dict(net.state_dict())


class _CountingBackend:
    """A torch.compile backend that runs each captured graph as it is and counts the calls of the compiled code."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs):
        def run(*args):
            self.calls += 1
            return graph.forward(*args)

        return run


class _StepLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _fit(tmp_path, **options) -> tuple[list[float], float, FGSMTraining]:
    """Three FGSM-RS steps and a validation on 3-channel images: channels-last strides differ from the default only
    with more than one channel."""
    L.seed_everything(0, verbose=False)
    module = FGSMTraining(
        net=SmallCNN(in_channels=3, image_size=32),
        eps=8 / 255,
        alpha=10 / 255,
        init="random_unclipped",
        optimizer="adam",
        lr=5e-3,
        lr_schedule="constant",
        weight_decay=0.0,
        eval_size=25,
        eval_alpha=2 / 255,
        eval_steps=2,
        **options,
    )
    losses = _StepLosses()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        inference_mode=False,
        callbacks=[losses],
        default_root_dir=tmp_path,
    )
    data = SyntheticImages(train_size=200, test_size=25, val_size=25, batch_size=25)
    trainer.fit(module, data)
    return losses.losses, float(trainer.callback_metrics["val/acc_pgd"]), module


def test_channels_last_and_compile_train_as_without_them(tmp_path):
    plain_losses, plain_pgd, plain = _fit(tmp_path)
    backend = _CountingBackend()
    losses, acc_pgd, module = _fit(tmp_path, channels_last=True, compile={"backend": backend})
    assert module.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert losses == pytest.approx(plain_losses, rel=1e-4)
    assert acc_pgd == pytest.approx(plain_pgd, abs=1 / 25 + 1e-6)  # one image may flip on rounding
    # every forward ran the compiled code: per training step the FGSM step and the update (2); in the validation
    # batch the clean pass, PGD's 2 steps and its check, the FGSM step and its check
    assert backend.calls >= 2 * 3 + 1 + 2 + 1 + 2
    # the aliasing probe hooks the compiled network's layers, which compiled code would skip: it runs eagerly
    images = torch.rand(8, 3, 32, 32)
    module.net.load_state_dict(plain.net.state_dict())
    calls = backend.calls
    measured = measure_model_aliasing(module.net, images)
    assert measured == pytest.approx(measure_model_aliasing(plain.net, images), rel=1e-5)
    assert set(measured) == {"conv1", "conv2"} and backend.calls == calls
    with torch.no_grad():
        module.net(images)  # compiled for these inputs, before any hook: the graph a hooked call would reuse
    with capture_aliasing(module.net) as recorder, torch.no_grad():  # the hooked measurement too
        module.net(images)
    assert recorder.means() == pytest.approx(measured, rel=1e-5)


def test_pinned_memory_follows_the_device_unless_given():
    data = MNIST5k(batch_size=50)
    data.setup()
    assert data.test_dataloader().pin_memory is False  # no trainer: not on CUDA
    data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    assert data.test_dataloader().pin_memory is True  # a trainer on CUDA
    synthetic = SyntheticImages(train_size=20, test_size=4, val_size=4, on_device=True)
    synthetic.trainer = data.trainer
    assert synthetic._pinned() is False  # images held on the GPU: nothing on the host to pin
    data.trainer, data.pin_memory = None, True
    assert data.test_dataloader().pin_memory is True
    with pytest.raises(ValueError, match="pin_memory"):
        MNIST5k(pin_memory="sometimes")


def test_the_aliasing_categories_of_a_compiled_network_are_the_eager_ones():
    net = SmallCNN(in_channels=3, image_size=32).eval()
    images = torch.rand(4, 3, 32, 32)
    eager_logits, eager = layer_categories(net, images)
    apply_speed_options(net, channels_last=False, compile_kwargs={"backend": "eager"})
    with torch.no_grad():
        net(images)  # compiled for these inputs before any hook: the graph a hooked call would reuse
    logits, categories = layer_categories(net, images)
    assert torch.allclose(logits, eager_logits) and set(categories) == set(eager) == {"conv1", "conv2"}
    for layer, fractions in eager.items():
        assert all(torch.allclose(categories[layer][name], value) for name, value in fractions.items())
