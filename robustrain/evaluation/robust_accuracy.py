"""Robust accuracy of a classifier under L-inf attacks (FGSM, PGD with restarts, AutoAttack), as pure functions.

No Lightning here: `robustrain.evaluation.RobustnessEvaluation` holds the arguments and calls these per test batch.
Inputs are images in [0, 1]; every eps and step size is in [0, 1] pixel units. The attack functions leave model
modes to the caller; `robust_accuracy` and `accuracy_vs_eps` put the model in eval mode and restore every
submodule's flag afterwards (`robustrain.core.train_eval_modes.eval_mode`).

Robust accuracy counts an example only if it is classified correctly after every attack run on it: with restarts,
each restart attacks the examples that are still correct, and an example fooled by any restart counts as broken
(stricter than keeping the highest-loss restart, which can be a correctly classified one).
AutoAttack is assembled in `robustrain.attacks.autoattack`.
"""

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from robustrain.attacks import (
    AUTOATTACK_STANDARD,
    UNIT_BOX,
    autoattack,
    check_autoattack_params,
    check_linf_params,
    fgsm,
    pgd,
)
from robustrain.core.train_eval_modes import eval_mode
from robustrain.core.validation import check_choice, check_in_range, check_positive_int

ATTACK_NAMES = ("clean", "fgsm", "pgd", "autoattack")
IMPLEMENTATION_NAMES = {  # what the report says ran
    "torchattacks": "torchattacks 3.5.1 APGD/APGDT/FAB/Square via robustrain.attacks.autoattack",
    "reference": "Croce & Hein's fra31/auto-attack (pyautoattack 0.2.0) via robustrain.attacks.autoattack_reference",
}


@dataclass(frozen=True)
class AttackSpec:
    """One evaluation attack and its settings; `key` names its accuracy (`test/acc_<key>`, report keys).

    Args:
        name: "clean" (no attack), "fgsm", "pgd" or "autoattack".
        eps: L-inf radius in [0, 1] pixel units (ignored by "clean").
        alpha: Step size. FGSM default: eps (Goodfellow's one step from x). PGD default: 2.5 * eps / steps
            (Madry et al.; Ribeiro & Schön's 100 steps of 2.5 * eps / 100); Wong et al.'s PGD-50-10 uses 2/255.
        steps: PGD steps, or AutoAttack's APGD / APGD-T / FAB iterations (original: 100; torchattacks' AutoAttack: 10).
        restarts: PGD random restarts; an example must survive all of them.
        random_start: PGD starts from a uniform point of the eps-ball (clamped to [0, 1]).
        early_stop: PGD stops attacking an example at the first step where it is misclassified and keeps that
            point (Wong et al.'s attack_pgd). Without it every example takes all steps and the last point counts.
        components: AutoAttack components, run in this order on the examples still correct: any of
            AUTOATTACK_COMPONENTS; default the standard version (apgd-ce, apgd-t, fab-t, square).
        n_target_classes: Target classes of apgd-t and fab-t; None = all other classes (9 on 10 classes, the original).
        square_queries: Square attack queries (original: 5000).
        seed: Seed of the AutoAttack components' random starts (the global RNG is restored afterwards).
        implementation: AutoAttack's code: "torchattacks" (its components composed by robustrain.attacks.autoattack)
            or "reference" (Croce & Hein's fra31/auto-attack, the `.[reference]` extra).
    """

    name: str
    eps: float = 0.0
    alpha: float | None = None
    steps: int = 1
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = False
    components: tuple[str, ...] = field(default=AUTOATTACK_STANDARD)
    n_target_classes: int | None = None
    square_queries: int = 5000
    seed: int = 0
    implementation: str = "torchattacks"

    def __post_init__(self) -> None:
        if self.name not in ATTACK_NAMES:
            check_choice("attack name", self.name, ATTACK_NAMES)
        object.__setattr__(self, "components", tuple(self.components))
        if self.name == "clean":
            return
        check_linf_params(self.eps, self.alpha, self.steps, self.restarts)
        if self.name == "autoattack":
            check_autoattack_params(
                self.eps, self.steps, self.components, self.n_target_classes, self.square_queries, self.implementation
            )

    @property
    def step_size(self) -> float:
        """The step actually used: alpha, or the default for the attack (see Args)."""
        if self.alpha is not None:
            return self.alpha
        return self.eps if self.name == "fgsm" else 2.5 * self.eps / self.steps

    @property
    def key(self) -> str:
        """ "clean", "fgsm", "pgd_<steps>x<restarts>" or "autoattack"."""
        return f"pgd_{self.steps}x{self.restarts}" if self.name == "pgd" else self.name

    def describe(self) -> dict:
        """The settings that define the attack, for reports (only the fields the attack uses)."""
        d = asdict(self)
        d["alpha"] = self.step_size if self.name in ("fgsm", "pgd") else None
        keep = {
            "clean": ("name",),
            "fgsm": ("name", "eps", "alpha"),
            "pgd": ("name", "eps", "alpha", "steps", "restarts", "random_start", "early_stop"),
            "autoattack": ("name", "eps", "steps", "components", "n_target_classes", "square_queries", "seed"),
        }[self.name]
        out = {k: d[k] for k in keep}
        if self.name == "autoattack":
            out["components"] = list(self.components)
            out["implementation"] = IMPLEMENTATION_NAMES[self.implementation]
        return out


def perturb(
    model: nn.Module, images: Tensor, labels: Tensor, spec: AttackSpec, box: tuple[float, float] = UNIT_BOX
) -> Tensor:
    """The adversarial images of one attack (the images themselves for "clean"), kept in `box` (the data's range);
    model modes are the caller's."""
    if spec.name == "clean":
        return images
    if spec.name == "fgsm":
        return fgsm(model, images, labels, spec.eps, spec.step_size, init="zero", box=box)
    if spec.name == "autoattack":
        return autoattack(
            model,
            images,
            labels,
            spec.eps,
            spec.steps,
            spec.components,
            spec.n_target_classes,
            spec.square_queries,
            spec.seed,
            box=box,
            implementation=spec.implementation,
        )
    return pgd(
        model,
        images,
        labels,
        spec.eps,
        spec.step_size,
        spec.steps,
        spec.random_start,
        spec.restarts,
        early_stop=spec.early_stop,
        box=box,
    )


def attack_batch(
    model: nn.Module, images: Tensor, labels: Tensor, spec: AttackSpec, box: tuple[float, float] = UNIT_BOX
) -> tuple[Tensor, Tensor]:
    """(adversarial images, bool (B,) correct on them) for one batch, the model in eval mode (modes restored)."""
    with eval_mode(model):
        adv = perturb(model, images, labels, spec, box)
        with torch.no_grad():
            correct = model(adv).argmax(1) == labels
    return adv, correct


Batches = Iterable[tuple[Tensor, Tensor]]


def robust_accuracy(
    model: nn.Module, batches: Batches, specs: Sequence[AttackSpec], box: tuple[float, float] = UNIT_BOX
) -> dict[str, float]:
    """Accuracy under each attack over all batches, the model in eval mode (every submodule's flag restored).

    Args:
        model: Classifier on [0, 1] images.
        batches: (images, labels) pairs on the model's device, e.g. a DataLoader (iterated once).
        specs: Attacks; their keys must be distinct.
        box: The data's pixel range, which the adversarial images stay in.

    Returns:
        AttackSpec.key -> fraction of examples correct after that attack.
    """
    keys = [spec.key for spec in specs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"attack keys {keys} must be distinct")
    correct, total = dict.fromkeys(keys, 0), 0
    for images, labels in batches:
        for spec in specs:
            correct[spec.key] += int(attack_batch(model, images, labels, spec, box)[1].sum())
        total += len(labels)
    if total == 0:
        raise ValueError("batches is empty: nothing to evaluate")
    return {key: value / total for key, value in correct.items()}


def headline_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    pgd_alpha: float,
    autoattack: bool = True,
    box: tuple[float, float] = UNIT_BOX,
) -> dict[str, float]:
    """The accuracies the docs report for a model: clean, PGD-50-10 and AutoAttack (standard, 100 iterations).

    Args:
        model: Classifier on [0, 1] images (put in eval mode for the attacks, modes restored).
        images: One batch of [0, 1] images on the model's device.
        labels: Their labels.
        eps: L-inf radius in [0, 1] pixel units (0.3 on MNIST).
        pgd_alpha: PGD's step (0.01 at eps 0.3).
        autoattack: Also run AutoAttack; off where it is too slow (FAB-T on a ResNet on a CPU).
        box: The data's pixel range, which the adversarial images stay in.

    Returns:
        {"clean", "pgd_50x10"[, "autoattack"]} -> accuracy.
    """
    specs = [AttackSpec("clean"), AttackSpec("pgd", eps, alpha=pgd_alpha, steps=50, restarts=10)]
    if autoattack:
        specs.append(AttackSpec("autoattack", eps, steps=100))
    return robust_accuracy(model, [(images, labels)], specs, box)


def check_eps_list(eps_list: Sequence[float]) -> list[float]:
    """The eps values as floats, raising ValueError unless each is in [0, 1] and the list is non-empty."""
    if len(eps_list) == 0:
        raise ValueError("eps_list is empty: give at least one eps in [0, 1]")
    for eps in eps_list:
        check_in_range("eps", eps, 0.0, 1.0, note="(eps_list: pixel units of images in [0, 1])")
    return [float(e) for e in eps_list]


def curve_specs(eps_list: Sequence[float], steps: int = 100, step_factor: float = 2.5) -> list[AttackSpec]:
    """PGD attacks of Ribeiro & Schön's accuracy-vs-eps curve: `steps` steps of step_factor * eps / steps each.

    eps 0 is the clean evaluation ("clean" spec): PGD at radius 0 returns the images themselves.
    """
    check_in_range("step_factor", step_factor, 0.0, low_open=True, note="(step = step_factor * eps / steps)")
    check_positive_int("steps", steps)
    return [
        AttackSpec("clean") if eps == 0 else AttackSpec("pgd", eps, alpha=step_factor * eps / steps, steps=steps)
        for eps in check_eps_list(eps_list)
    ]


def accuracy_vs_eps(
    model: nn.Module,
    batches: Batches,
    eps_list: Sequence[float],
    steps: int = 100,
    step_factor: float = 2.5,
    box: tuple[float, float] = UNIT_BOX,
) -> list[float]:
    """PGD accuracy at each eps (Ribeiro & Schön: torchattacks PGD, 100 steps of 2.5 * eps / 100), one pass.

    Args:
        model: Classifier on [0, 1] images.
        batches: (images, labels) pairs on the model's device (iterated once; every eps sees the same images).
        eps_list: Radii in [0, 1] pixel units.
        steps: PGD steps per eps.
        step_factor: Step size = step_factor * eps / steps.
        box: The data's pixel range, which the adversarial images stay in.

    Returns:
        Accuracy per eps, in the order of eps_list.
    """
    specs = curve_specs(eps_list, steps, step_factor)
    correct, total = [0] * len(specs), 0
    for images, labels in batches:
        for i, spec in enumerate(specs):
            correct[i] += int(attack_batch(model, images, labels, spec, box)[1].sum())
        total += len(labels)
    if total == 0:
        raise ValueError("batches is empty: nothing to evaluate")
    return [c / total for c in correct]


def perturbation_spectrum(delta: Tensor) -> Tensor:
    """|FFT| of adversarial perturbations, centred (Grabinski et al. 2022, section 4.1.3), per sample and channel.

    Args:
        delta: x_adv - x, shape (B, C, H, W).

    Returns:
        float32 (B, C, H, W): |fftshift(fft2(delta, norm="forward"))|, DC in the centre ((H // 2, W // 2)).
        "forward" normalisation puts coefficients in pixel units: a constant perturbation of eps has DC = eps,
        and a pixel-wise +-eps checkerboard has eps at the highest frequency. Average over samples in the caller.
    """
    if delta.dim() != 4:
        raise ValueError(f"delta must have shape (B, C, H, W), got shape {tuple(delta.shape)}")
    spectrum = torch.fft.fft2(delta.detach().float(), norm="forward")
    return torch.fft.fftshift(spectrum, dim=(-2, -1)).abs()
