"""AutoAttack (Croce & Hein 2020), L-inf: assembled from torchattacks' components, or Croce & Hein's own code.

AutoAttack (Croce & Hein 2020) is composed here from torchattacks 3.5.1's components (APGD, APGDT, FAB, Square)
called through their `forward`, because its `AutoAttack` class (a) hard-codes 10 iterations for APGD, APGD-T and
FAB where the original runs 100, (b) targets `n_classes - 1` classes, with n_classes defaulting to 10 whatever the
model has, (c) re-seeds the global torch RNG (`torch.manual_seed`) inside every component, which would make every
later random start in the run identical, (d) switches the model to eval() and back to train() only, and (e)
captures the device at construction. Here steps, targets and queries are arguments, the global RNG is restored after
each component, the device is the model's at call time, and each adversarial example is checked against the
eps-ball before it is counted. Data outside [0, 1] (injected features) is attacked through robustrain.attacks.box's
affine map, as torchattacks' components clip to [0, 1].

`implementation="reference"` runs Croce & Hein's own AutoAttack instead (robustrain.attacks.autoattack_reference,
the optional extra `.[reference]`) with the same components, iterations, targets, queries, seed and box.
"""

from collections.abc import Sequence

import torch
import torchattacks
from torch import Tensor, nn

from robustrain.attacks.autoattack_reference import check_reference_available, reference_autoattack
from robustrain.attacks.box import UNIT_BOX, UnitBoxModel, check_box
from robustrain.attacks.inputs import check_linf_params, model_device, require_grad_mode
from robustrain.core.validation import check_choice, check_positive_int, check_that

AUTOATTACK_COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # Croce & Hein's 'standard' version, in its order
AUTOATTACK_IMPLEMENTATIONS = ("torchattacks", "reference")
_EPS_BALL_TOLERANCE = 1e-5


def check_autoattack_params(
    eps: float,
    steps: int,
    components: Sequence[str],
    n_target_classes: int | None,
    square_queries: int,
    implementation: str = "torchattacks",
) -> None:
    """Raises ValueError naming the first AutoAttack setting outside its valid range, or a missing implementation."""
    check_choice("implementation", implementation, AUTOATTACK_IMPLEMENTATIONS)
    if implementation == "reference":
        check_reference_available()
    check_linf_params(eps, steps=steps)
    unknown = [c for c in components if c not in AUTOATTACK_COMPONENTS]
    ok = not unknown and bool(components) and len(set(components)) == len(components)
    check_that(ok, "components", list(components), f"a non-empty list without repeats of {list(AUTOATTACK_COMPONENTS)}")
    if n_target_classes is not None:  # None: all other classes
        check_positive_int("n_target_classes", n_target_classes)
    check_positive_int("square_queries", square_queries)


def _fork_rng(device: torch.device):
    """Global RNG state saved on entry and restored on exit (CPU and, for a CUDA model, its device)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _autoattack_component(
    name: str, model: nn.Module, eps: float, steps: int, n_targets: int, queries: int, seed: int
) -> "torchattacks.attack.Attack":
    common = {"norm": "Linf", "eps": eps, "seed": seed, "verbose": False}
    if name in ("apgd-ce", "apgd-dlr"):
        attack = torchattacks.APGD(model, steps=steps, n_restarts=1, loss=name[5:], **common)
    elif name == "apgd-t":
        # torchattacks targets the classes ranked 2 .. n_classes by the logits: n_classes = targets + 1
        attack = torchattacks.APGDT(model, steps=steps, n_restarts=1, n_classes=n_targets + 1, **common)
    elif name in ("fab", "fab-t"):
        attack = torchattacks.FAB(
            model, steps=steps, n_restarts=1, multi_targeted=name == "fab-t", n_classes=n_targets + 1, **common
        )
    else:
        # resc_schedule=False as Croce & Hein's AutoAttack builds its Square: torchattacks' default (True) stretches
        # the square-size schedule written for 10,000 queries onto n_queries, shrinking squares twice as fast at 5000,
        # which broke 11 more of 500 digits of a masked model than the reference (docs/evaluation.md)
        attack = torchattacks.Square(model, n_queries=queries, n_restarts=1, resc_schedule=False, **common)
    attack.set_device(model_device(model))
    return attack


def autoattack(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    steps: int = 100,
    components: Sequence[str] = AUTOATTACK_STANDARD,
    n_target_classes: int | None = None,
    square_queries: int = 5000,
    seed: int = 0,
    box: tuple[float, float] = UNIT_BOX,
    implementation: str = "torchattacks",
) -> Tensor:
    """AutoAttack (Croce & Hein 2020), L-inf, with configurable iterations: torchattacks' components or the reference.

    Each component attacks only the examples every earlier component failed on; an example's adversarial image is
    the first one that fools the model (the clean image if none does). The global RNG is restored after every
    component (torchattacks re-seeds it with `seed`; so does the reference).

    Args:
        model: Classifier on [0, 1] images, in the mode it should be attacked in (eval).
        images: (B, C, H, W) in [0, 1].
        labels: (B,) int64.
        eps: L-inf radius in [0, 1] pixel units.
        steps: APGD / APGD-T / FAB iterations (original AutoAttack: 100; torchattacks' 'standard': 10).
        components: Components in order, from AUTOATTACK_COMPONENTS; default apgd-ce, apgd-t, fab-t, square.
        n_target_classes: Targets of apgd-t / fab-t; None = num_classes - 1 (the original's 9 on 10 classes).
        square_queries: Queries of the Square attack (original: 5000).
        seed: Seed of the components' random starts.
        box: (lowest, highest) pixel value of the images and their adversarial versions; other than (0, 1) the
            components attack `UnitBoxModel(model, box)` with radius eps / (high - low).
        implementation: "torchattacks" (torchattacks 3.5.1's components composed here) or "reference" (Croce &
            Hein's fra31/auto-attack code, the `pyautoattack` package of the `.[reference]` extra).

    Returns:
        Adversarial images (B, C, H, W), each within eps of its image and in the box.
    """
    check_autoattack_params(eps, steps, components, n_target_classes, square_queries, implementation)
    check_box(box)
    if tuple(box) != UNIT_BOX:
        unit = UnitBoxModel(model, box)
        adv = autoattack(
            unit,
            unit.to_unit(images),
            labels,
            eps / unit.scale,
            steps,
            components,
            n_target_classes,
            square_queries,
            seed,
            implementation=implementation,
        )
        return unit.from_unit(adv)
    components = tuple(components)
    require_grad_mode()
    x, y = images.detach(), labels.detach()
    if len(x) == 0:
        return x.clone()
    with torch.no_grad():
        logits = model(x)
    correct, num_classes = logits.argmax(1) == y, logits.shape[1]
    n_targets = num_classes - 1 if n_target_classes is None else n_target_classes
    if n_targets > num_classes - 1:
        raise ValueError(f"n_target_classes={n_target_classes} must be <= num_classes - 1 = {num_classes - 1}")
    needs_dlr = {"apgd-dlr", "apgd-t"} & set(components)
    if needs_dlr and num_classes < 4:
        raise ValueError(
            f"components {sorted(needs_dlr)} use the DLR loss, which needs >= 4 classes; got {num_classes}"
        )
    if implementation == "reference":
        return reference_autoattack(model, x, y, eps, steps, components, n_targets, square_queries, seed)
    adv = x.clone()
    device = model_device(model)
    with torch.enable_grad():
        for name in components:
            todo = correct.nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            attack = _autoattack_component(name, model, eps, steps, n_targets, square_queries, seed)
            with _fork_rng(device):
                candidate = attack.forward(x[todo], y[todo]).detach()
            with torch.no_grad():
                fooled = model(candidate).argmax(1) != y[todo]
            outside = (candidate - x[todo]).abs().flatten(1).amax(1) > eps + _EPS_BALL_TOLERANCE
            outside |= (candidate < 0).flatten(1).any(1) | (candidate > 1).flatten(1).any(1)
            if (fooled & outside).any():
                raise RuntimeError(
                    f"autoattack component {name!r} returned images outside the eps={eps} ball or [0, 1]"
                )
            adv[todo[fooled]] = candidate[fooled]
            correct[todo[fooled]] = False
    return adv
