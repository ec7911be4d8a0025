"""Trainer plumbing shared by the guardrail (Trainer), generator (GRPOTrainer) and SafeDPO (DPOTrainer).

- `quiet_trainer`: keep the progress bar, drop the per-step log dicts from the console.
- `SkipNonFinite`: a Trainer mixin that skips (and counts) an optimizer step whose loss is NaN
  or inf, whose inputs were flagged as such (e.g. non-finite rewards), or whose gradients are not
  all finite while the loss is (seen on an H200: bf16 SDPA attention over left-padded GRPO batches
  gave NaN gradients from a finite loss, and the AdamW step turned every weight into NaN). A skipped
  step leaves the weights and the optimizer state exactly as they were. Under DeepSpeed the engine
  steps its own optimizer: only the loss check applies there.
"""

from __future__ import annotations

import contextlib
import math
import types

import torch


def quiet_trainer(trainer) -> None:
    """Keep a Trainer's progress bar but stop it printing every log dict to the console.

    duoguard logs its own per-round and per-stage summaries; the raw dicts stay available in
    `trainer.state.log_history`.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _QuietProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    if trainer.pop_callback(PrinterCallback) is None and trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_QuietProgress)


def grads_finite(optimizer) -> bool:
    """Whether every gradient the optimizer would apply is finite (one device sync)."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


class SkipNonFinite:
    """Mix into a transformers Trainer subclass (before the Trainer class)."""

    skipped_steps = 0
    _flagged = False  # set by flag_nonfinite() for the micro-batch being prepared
    _skip_step = False  # the current accumulation window saw a non-finite loss or input

    def flag_nonfinite(self) -> None:
        self._flagged = True

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._flagged or not torch.isfinite(loss).all():
            self._flagged = False
            self._skip_step = True
            model.zero_grad(set_to_none=True)
            return torch.zeros_like(loss)
        return loss

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if not getattr(optimizer, "_duoguard_skips", False):
            step = optimizer.step
            trainer = self

            def guarded_step(opt, *args, **kwargs):
                if not trainer._skip_step and not grads_finite(opt):
                    trainer._skip_step = True
                if torch.distributed.is_available() and torch.distributed.is_initialized():
                    # data parallel: the gradients were averaged over ranks, so skip on every rank or none
                    flag = torch.tensor([float(trainer._skip_step)], device=trainer.args.device)
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                    trainer._skip_step = bool(flag.item())
                if trainer._skip_step:
                    trainer._skip_step = False
                    trainer.skipped_steps += 1
                    opt.zero_grad(set_to_none=True)
                    return None
                return step(*args, **kwargs)

            # a bound method, as accelerate and LR schedulers expect of `optimizer.step`
            optimizer.step = types.MethodType(guarded_step, optimizer)
            optimizer._duoguard_skips = True
        return optimizer


def one_device_per_process(args) -> None:
    """Each process trains on one device: with several GPUs visible and no launcher, the Trainer would
    wrap the model in `nn.DataParallel` (TRL refuses it) and multiply every global batch by the GPU
    count. More devices are more ranks (duoguard.runtime.ranks)."""
    if args.n_gpu > 1:  # n_gpu sets the devices up first; _n_gpu is what the Trainer reads after
        args._n_gpu = 1


def zero3(trainer) -> bool:
    """Whether the trainer's model is sharded by DeepSpeed ZeRO-3."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(trainer.is_deepspeed_enabled and plugin is not None and plugin.zero_stage == 3)


@contextlib.contextmanager
def gathered(module: torch.nn.Module, sharded: bool):
    """Inside, every parameter of the module is whole on every rank (a collective under ZeRO-3: every
    rank must enter it); without sharding, nothing to do."""
    if not sharded:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        yield


def full_state_dict(module: torch.nn.Module, sharded: bool) -> dict[str, torch.Tensor]:
    """A copy of the module's full weights on every rank (see `gathered`). Tied weights (an LM head that is
    the embedding) stay one tensor, so a checkpoint saved from it stores them once."""
    copies: dict[tuple, torch.Tensor] = {}  # by storage: tied tensors share one
    out: dict[str, torch.Tensor] = {}
    with gathered(module, sharded):
        for k, v in module.state_dict().items():
            key = (v.data_ptr(), v.shape, v.dtype) if v.numel() else (k,)
            if key not in copies:
                copies[key] = v.detach().clone()
            out[k] = copies[key]
    return out


def trained_model(trainer) -> torch.nn.Module:
    """The trained model as a plain module holding its full weights on every rank: under ZeRO-3 each
    rank's copy is a shard with DeepSpeed's hooks on it, so the weights are gathered into a new one."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not zero3(trainer):
        return model
    from transformers.integrations import deepspeed as hf_deepspeed

    state = full_state_dict(model, sharded=True)
    # while the Trainer's ZeRO-3 config is set, transformers builds every new model sharded
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        fresh = type(model)(model.config)  # in the configured dtype: fp32 weights stay fp32
    finally:
        hf_deepspeed.set_hf_deepspeed_config(trainer.accelerator.state.deepspeed_plugin.hf_ds_config)
    fresh.load_state_dict(state)
    return fresh.to(next(model.parameters()).device)


FEW_STEPS = 50  # below this many optimizer steps a classifier rarely trains: warned


def optimizer_steps(examples: int, global_batch: int, epochs: float, max_steps: int = -1) -> int:
    """Optimizer steps of a run over `examples` at `global_batch` examples per step (the Trainer's count)."""
    if max_steps > 0:
        return max_steps
    return math.ceil(math.ceil(examples / global_batch) * epochs)
