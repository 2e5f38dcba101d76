"""The ``vllm`` extra resolves beside the project's own pins (pip's resolver, a dry run: no GPU, no
install; it reads package metadata from the registry, ~2 min here, hence slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_vllm_extra_resolves_with_the_project_pins(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
                           "-e", f"{ROOT}[vllm]"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    versions = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert versions["vllm"].startswith("0.33.")
    assert versions["transformers"].startswith("5.20.")  # the overlap of vLLM's <5.21 and the project's >=5.20
