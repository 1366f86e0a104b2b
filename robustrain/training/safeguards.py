"""What every RobustClassifier does to make a run reproducible, resumable and safe from non-finite values.

Reproducible epochs. Every random draw of epoch e (attack starts, augmentation, dropout, the PGD restarts of its
validation) comes from the global RNGs reseeded at the start of the epoch with `epoch_seed(run_seed, e, rank)`, and
the training order comes from the datamodule's `EpochShuffleSampler`, a function of (seed, e) too. Nothing an epoch
draws depends on how the process got there, so a run resumed from the checkpoint of epoch e - 1 draws exactly what
the uninterrupted run draws: same device, thread count and library versions give identical histories. `run_seed`
is Lightning's global seed (`seed_everything`) and travels in every checkpoint.

The non-finite guard. Before every optimizer step the gradient norm is checked (one reduction; under DDP the
gradients are already all-reduced, so every rank takes the same decision), and before every checkpoint the
weights. The gradient check stays on the device: its flag is handed to the (fused) optimizer as `found_inf`, as a
GradScaler does, so a non-finite update, and every one after it, is skipped without the host waiting for the device;
the flag is read where Lightning logs (every `log_every_n_steps`) and at each epoch's last batch. A non-finite value
raises `NonFiniteError`, naming the epoch and step where it first appeared, before any update from there on is
applied or any file is written: the weights in every checkpoint on disk are the last finite ones. Validating, testing
or predicting with non-finite weights is refused the same way (it would report chance accuracy and a nan loss).

What a checkpoint records beside the weights, under `checkpoint["robustrain"]`: the run seed, the run signature the
CLI computed for the run (robustrain.runs.resume: what a resume compares), and the settings changes resumes allowed.
"""

import math
from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

from robustrain.core.errors import BadInputError, NonFiniteError
from robustrain.core.seeding import epoch_seed, global_seed, seed_all

CHECKPOINT_KEY = "robustrain"


def first_non_finite(named: Iterable[tuple[str, torch.Tensor | None]]) -> str | None:
    """The name of the first floating tensor holding a nan or inf, or None when all are finite."""
    for name, tensor in named:
        if tensor is not None and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


class Safeguards(L.LightningModule):
    """Reproducible epochs and the non-finite guard, as LightningModule hooks (see the module docstring)."""

    _run_seed: int | None = None
    _seed_override: int | None = None  # set by the CLI when a resume is allowed to change the seed
    _guard: dict[str, torch.Tensor] | None = None  # the non-finite guard's device state (on_before_optimizer_step)
    _last_train_loss: torch.Tensor | None = None  # the last training step's loss, detached (set by the module)
    run_signature: dict | None = None  # set by the CLI (robustrain.runs.resume); saved in every checkpoint
    settings_changes: list | None = None  # [{"epoch", "changes"}] allowed by resumes, saved in every checkpoint

    def _where(self) -> str:
        return f"epoch {self.current_epoch}, step {self.global_step}"

    def unlogged_reason(self, key: str) -> str | None:
        """Why the metric `key` will never be logged in this run, or None if it may be (subclasses say)."""
        return None

    def on_fit_start(self) -> None:
        for callback in self.trainer.callbacks:
            key = getattr(callback, "monitor", None)
            reason = self.unlogged_reason(key) if isinstance(key, str) else None
            if reason is not None:
                raise BadInputError(f"{type(callback).__name__} monitors {key!r}, which this run never logs: {reason}")
        if self._run_seed is None:  # set from the checkpoint when resuming
            self._run_seed = global_seed()

    def _check_weights_finite(self, what: str) -> None:
        bad = first_non_finite(list(self.named_parameters()) + list(self.named_buffers()))
        if bad is not None:
            raise NonFiniteError(
                f"{bad} is not finite: {what} these weights would report chance accuracy and a nan loss; use a "
                "checkpoint written before training diverged"
            )

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.VALIDATING:  # not the validation inside fit
            self._check_weights_finite("validating")

    def on_test_start(self) -> None:
        self._check_weights_finite("testing")

    def on_predict_start(self) -> None:
        self._check_weights_finite("predicting with")

    def on_train_epoch_start(self) -> None:
        seed_all(epoch_seed(self._run_seed, self.current_epoch, self.global_rank))

    # --- the non-finite guard, on the device ---------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Check the gradients before the update. With fused optimizer kernels (`fused_optimizer`), on the device: the
        flag goes to the optimizer as `found_inf`, as under a GradScaler, so a non-finite update is skipped without the
        host waiting, and the flag is read where a decision is due anyway (`_raise_if_non_finite`). With the classic
        kernels (the CPU's default) the flag is read at once, every step."""
        if str(self.trainer.precision).startswith("16"):
            return  # fp16's loss scaler expects and skips inf gradients itself
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        finite = torch.isfinite(torch.nn.utils.get_total_norm(grads))
        if not all(group.get("fused") for group in optimizer.param_groups):
            if not finite:
                self._raise_non_finite(self.global_step, self._last_train_loss)
            return
        if self._guard is None or self._guard["bad"].device != finite.device:
            zero = torch.zeros((), device=finite.device)
            self._guard = {"bad": zero, "bad_step": zero.clone(), "bad_loss": zero.clone()}
        guard = self._guard
        new = (~finite) & (guard["bad"] == 0)
        loss = math.nan if self._last_train_loss is None else self._last_train_loss.float()
        # host scalars enter as kernel arguments: no copy to the device, no sync
        guard["bad_step"].copy_(torch.where(new, float(self.global_step), guard["bad_step"]))
        guard["bad_loss"].copy_(torch.where(new, loss, guard["bad_loss"]))
        guard["bad"].copy_(torch.maximum(guard["bad"], (~finite).float()))  # 1 from the first bad step on
        optimizer.found_inf = guard["bad"]  # so every update from that step on is skipped

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Read the guard's flag where Lightning logs (every log_every_n_steps) and at the epoch's last batch, before
        its checkpoints: the one host read of the guard, on a schedule."""
        trainer = self.trainer
        last = batch_idx + 1 >= trainer.num_training_batches
        if last or trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            self._raise_if_non_finite()

    def _raise_if_non_finite(self) -> None:
        """Raise for a non-finite gradient the device flagged since training started. Every read falls in the epoch
        of the flag: the epoch's last batch is always read, and a flag stops the run at its first read."""
        guard = self._guard
        if guard is not None and bool(guard["bad"]):
            self._raise_non_finite(int(guard["bad_step"]), guard["bad_loss"])

    def _raise_non_finite(self, step: int, loss: torch.Tensor | None) -> None:
        shown = "?" if loss is None else f"{float(loss)}"
        raise NonFiniteError(
            f"non-finite gradients at epoch {self.current_epoch}, step {step} (training loss {shown}): training "
            "stopped before the update; the last checkpoint holds the last finite weights (lower the learning rate or "
            "the attack step)"
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self._raise_if_non_finite()  # a skipped update since the last read: no checkpoint of this run goes on
        bad = first_non_finite(list(self.named_parameters()) + list(self.named_buffers()))
        if bad is not None:
            raise NonFiniteError(
                f"{bad} is not finite at {self._where()}: no checkpoint is written; the last one on disk holds the "
                "last finite weights"
            )
        record = {"run_seed": self._run_seed}
        if self.run_signature is not None:
            record["signature"] = self.run_signature
        if self.settings_changes:
            record["settings_changes"] = list(self.settings_changes)
        checkpoint[CHECKPOINT_KEY] = record

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        record = checkpoint.get(CHECKPOINT_KEY, {})
        self._run_seed = record.get("run_seed") if self._seed_override is None else self._seed_override
        self.settings_changes = list(record.get("settings_changes", [])) + list(self.settings_changes or [])
