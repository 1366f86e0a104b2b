"""Benchmark of the batched grid evaluation against the per-image loop, in image-transforms per second.

    python -m benchmarks.spatial [--repeats 5] [--threads N]

For each network (SmallCNN on MNIST5k digits worst-of-10 spatially trained, grid accuracy about 60%, the case early
exit must serve: most images run all 775 transforms; SmallCNN trained briefly, grid accuracy 0; PreActResNet18 at
32x32 with random weights on random images), it times, alternating within every repeat:
  A  ours, full grid: `evaluate_transforms` over the 31 x 5 x 5 = 775 transforms (+-30 deg, +-3 px), loss and
     correctness of every image-transform, `chunk_size` transforms per forward;
  A' ours, early exit: the same grid in accuracy-only mode (fooled images leave after each chunk);
  B  the per-image loop: one image and one transform per forward through
     `torchvision.transforms.functional.affine` (on a few images and the first transforms of the grid; its cost
     per image-transform is constant, so the rate extrapolates).
It prints the median rate of each and the ratios A/B, A'/B with their spread (min..max of the per-repeat ratios).
"""

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from benchmarks.timing import timed
from robustrain.core.train_eval_modes import eval_mode
from robustrain.data import load_mnist5k
from robustrain.models import PreActResNet18, SmallCNN
from robustrain.spatial import evaluate_transforms, grid_parameters, rotate_translate, worst_of_k

CACHE_DIR = Path("runs/bench")  # trained benchmark models (gitignored)
WORST_OF_10_EPOCHS = 8


def seed_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The per-image reference: for each image, for each transform, affine() then one forward of one image."""
    losses = torch.zeros(x.shape[0], params.shape[0], device=x.device)
    correct = torch.zeros(x.shape[0], params.shape[0], dtype=torch.bool)
    with torch.no_grad():
        for i in range(x.shape[0]):
            for t, (rotation_deg, tx_px, ty_px) in enumerate(params.tolist()):
                # torchvision's positive angle is clockwise, ours counter-clockwise
                image = TF.affine(
                    x[i],
                    angle=-rotation_deg,
                    translate=[tx_px, ty_px],
                    scale=1.0,
                    shear=[0.0],
                    interpolation=TF.InterpolationMode.BILINEAR,
                )
                logits = model(image[None])
                losses[i, t] = F.cross_entropy(logits, y[i : i + 1])
                correct[i, t] = logits.argmax(dim=1).item() == y[i].item()
    return losses, correct


def small_cnn_setup(n_images: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """SmallCNN after 200 Adam steps on MNIST5k (about 90% clean accuracy), and n held-out digits."""
    torch.manual_seed(0)
    images, labels = load_mnist5k()
    order = torch.randperm(len(labels))
    train, test = order[:4000], order[4000 : 4000 + n_images]
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(200):
        batch = train[(step * 50) % 4000 : (step * 50) % 4000 + 50]
        loss = F.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), images[test], labels[test]


def worst_of_10_setup(
    n_images: int, cache_dir: Path | None = CACHE_DIR
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """SmallCNN worst-of-10 spatially trained on MNIST5k (grid accuracy about 60%), and n held-out digits.

    8 epochs of Engstrom et al.'s worst-of-10 training (10 random transforms in +-30 deg, +-3 px per image, the
    misclassified-then-highest-loss one trained on; Adam, one-cycle lr peaking at 5e-3, batch 100) on 4000 digits,
    seed 0: about a minute on 2 CPU cores. The weights are cached under `cache_dir` (None: always train).
    """
    cache = None if cache_dir is None else cache_dir / f"smallcnn_worst_of_10_e{WORST_OF_10_EPOCHS}_seed0.pt"
    torch.manual_seed(0)
    images, labels = load_mnist5k()
    order = torch.randperm(len(labels))
    train, test = order[:4000], order[4000 : 4000 + n_images]
    model = SmallCNN()
    if cache is not None and cache.exists():
        model.load_state_dict(torch.load(cache, weights_only=True))
        return model.eval(), images[test], labels[test]
    steps_per_epoch = len(train) // 100
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=5e-3, total_steps=WORST_OF_10_EPOCHS * steps_per_epoch, pct_start=0.4
    )
    for _ in range(WORST_OF_10_EPOCHS):
        for batch in train[torch.randperm(len(train))].split(100):
            x, y = images[batch], labels[batch]
            with eval_mode(model):
                params, _ = worst_of_k(model, x, y, k=10, chunk_size=10)  # (B, 3)
            loss = F.cross_entropy(model(rotate_translate(x, params[:, 0], params[:, 1:])), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache)
    return model.eval(), images[test], labels[test]


def preact_setup(n_images: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """PreActResNet18 with random weights on random 32x32 images labelled with its own clean predictions."""
    torch.manual_seed(0)
    model = PreActResNet18().eval()
    x = torch.rand(n_images, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(dim=1)  # 100% clean accuracy, so early exit has something to drop
    return model, x, y


def bench_rates(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    repeats: int,
    chunk_size: int,
    n_slow_images: int,
    n_slow_transforms: int,
) -> dict[str, object]:
    """Image-transforms per second of A, A' and B (one entry per alternating repeat), with the model's accuracies.

    Returns:
        {"rates": {"full": [...], "early": [...], "seed": [...]}, "clean_acc": float, "grid_acc": float}.
    """
    grid = grid_parameters()  # (775, 3)
    slow_x, slow_y, slow_grid = x[:n_slow_images], y[:n_slow_images], grid[:n_slow_transforms]
    evaluate_transforms(model, x[:2], y[:2], grid[:64], chunk_size=chunk_size)  # warm-up
    seed_loop(model, slow_x[:1], slow_y[:1], slow_grid[:5])
    full = lambda: evaluate_transforms(model, x, y, grid, chunk_size=chunk_size)
    early = lambda: evaluate_transforms(model, x, y, grid, chunk_size=chunk_size, early_exit=True)
    rates: dict[str, list[float]] = {"full": [], "early": [], "seed": []}
    for _ in range(repeats):  # alternate A, A', B within each repeat
        rates["full"].append(x.shape[0] * len(grid) / timed(full, x.device))
        rates["early"].append(x.shape[0] * len(grid) / timed(early, x.device))
        slow = lambda: seed_loop(model, slow_x, slow_y, slow_grid)
        rates["seed"].append(n_slow_images * n_slow_transforms / timed(slow, x.device))
    correct = full().correct  # (B, 775)
    with torch.no_grad():
        clean_acc = (model(x).argmax(1) == y).float().mean()
    return {
        "rates": rates,
        "clean_acc": float(clean_acc),
        "grid_acc": float(correct.all(dim=1).float().mean()),
        "early_exit_work": early_exit_work(correct, chunk_size),
    }


def early_exit_work(correct: torch.Tensor, chunk_size: int) -> float:
    """Fraction of the full grid's image-transforms that early exit still evaluates, from the full grid's results.

    An image leaves after the chunk holding its first misclassified transform; a robust image runs every chunk. So
    early exit does 1 / fraction times less work than the full grid (its later forwards are smaller, which on a CPU
    also makes them a little faster per image).

    Args:
        correct: (B, T) correctness of every image under every transform, in evaluation order.
        chunk_size: Transforms per forward pass.
    """
    n_transforms = correct.shape[1]
    fooled = ~correct  # (B, T)
    first = torch.where(fooled.any(dim=1), fooled.float().argmax(dim=1), n_transforms)  # (B,) first fooling index
    evaluated = ((first // chunk_size + 1) * chunk_size).clamp(max=n_transforms)  # (B,) transforms run
    return int(evaluated.sum()) / correct.numel()


def bench(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    args: argparse.Namespace,
    n_slow_images: int,
    n_slow_transforms: int,
) -> dict[str, float]:
    result = bench_rates(model, x, y, args.repeats, args.chunk_size, n_slow_images, n_slow_transforms)
    rates = result["rates"]
    ratios = {key: [a / b for a, b in zip(rates[key], rates["seed"])] for key in ("full", "early")}
    print(
        f"\n{name}: {x.shape[0]} images x 775 transforms (ours, chunk_size {args.chunk_size}); seed loop on "
        f"{n_slow_images} images x {n_slow_transforms} transforms; {args.repeats} alternating repeats; "
        f"clean acc {result['clean_acc']:.2f}, grid acc {result['grid_acc']:.2f}; early exit evaluates "
        f"{result['early_exit_work']:.0%} of the grid"
    )
    print(f"  {'method':<26}{'image-transforms/s (median, min..max)':<44}{'x seed loop (median, min..max)'}")
    labels = {"seed": "per-image loop (B)", "full": "ours, full grid (A)", "early": "ours, early exit (A')"}
    for key in ("seed", "full", "early"):
        r = rates[key]
        line = f"  {labels[key]:<26}{statistics.median(r):>10.0f}  ({min(r):.0f}..{max(r):.0f})"
        if key != "seed":
            q = ratios[key]
            line = f"{line:<70}{statistics.median(q):>7.1f}x  ({min(q):.1f}..{max(q):.1f})"
        print(line)
    return {key: statistics.median(q) for key, q in ratios.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (default 3)")
    parser.add_argument("--chunk-size", dest="chunk_size", type=int, default=8, help="transforms per forward")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--small-cnn-images", type=int, default=50, help="images of our SmallCNN runs")
    parser.add_argument("--preact-images", type=int, default=4, help="images of our PreActResNet18 runs")
    parser.add_argument("--device", default="cpu", help="torch device of every run (default cpu)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # A benchmark's result is its printout.
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    device = torch.device(args.device)
    for name, setup, n_images, n_slow_images, n_slow_transforms in (
        ("SmallCNN worst-of-10 trained, MNIST5k 28x28", worst_of_10_setup, args.small_cnn_images, 2, 100),
        ("SmallCNN briefly trained, MNIST5k 28x28", small_cnn_setup, args.small_cnn_images, 2, 100),
        ("PreActResNet18, 32x32 (random weights)", preact_setup, args.preact_images, 1, 60),
    ):
        model, x, y = setup(n_images)
        bench(name, model.to(device), x.to(device), y.to(device), args, n_slow_images, n_slow_transforms)


if __name__ == "__main__":
    main()
