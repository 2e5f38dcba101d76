"""benchmarks/fsdp_memory.py --smoke: two 2-rank FSDP2 runs of a tiny Llama (full, LoRA), one JSON object.

Slow: four interpreters start (torch.distributed.run, two ranks, twice), ~50 s on the 2-core CI machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_prints_measured_peaks_estimates_and_ratios_per_method():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fsdp_memory.py"), "--smoke"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["machine"] and report["smoke"] is True and report["ranks"] == 2 and report["dtype"] == "float32"
    assert set(report["methods"]) == {"full", "lora"}
    for method, m in report["methods"].items():
        assert set(m["measured_peak_gib"]) == {"rank0", "rank1"}
        assert all(v > 0 for v in m["measured_peak_gib"].values())
        assert set(m["load_peak_gib"]) == {"rank0", "rank1"}
        parts = m["components_gib"]
        assert set(parts) >= {"weights", "gradients", "optimizer_state", "gather_buffers", "activations"}
        assert m["estimate_gib"] == pytest.approx(sum(parts.values()), abs=1e-5)
        assert m["ratio"] == pytest.approx(max(m["measured_peak_gib"].values()) / m["estimate_gib"], rel=0.02)
        assert m["trained_parameters"] < m["parameters"] if method == "lora" else m["trained_parameters"] == m["parameters"]
